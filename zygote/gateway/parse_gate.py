"""The gate on a worker's first input: the ``DagFileParseRequest`` must name the file the spawn named.

Why: the path check on ``spawn`` alone is not enough. A worker parses the file named in the first
frame the client writes to its ``requests`` channel (Airflow's ``DagFileParseRequest``), so a
client could spawn an allowed path and then ask for any other file. The gateway therefore holds a
worker's input until that first frame is complete and checks it: ``file`` must be the spawn's
``path`` (already checked against the roots) and ``bundle_path``, which the worker puts on
``sys.path``, must lie under a root too.

Airflow's framing (``airflow.sdk.execution_time.comms``): a 4-byte big-endian length, then a
msgpack array ``[id, body, error]`` whose ``body`` is the request's ``model_dump()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from zygote.gateway.allowed_paths import directory_refusal

LENGTH_BYTES = 4
MAX_FIRST_FRAME = 64 * 1024 * 1024
PARSE_REQUEST = "DagFileParseRequest"


class Verdict:
    """Sentinel for "the first frame is not complete yet"."""


WAIT = Verdict()


def check_first_frame(pending: bytes | bytearray, spawn_path: str, roots: tuple[Path, ...]) -> Verdict | str:
    """``WAIT`` until the first frame is in ``pending``; then "" (allowed) or why it is refused."""
    if len(pending) < LENGTH_BYTES:
        return WAIT
    length = int.from_bytes(pending[:LENGTH_BYTES], "big")
    if length > MAX_FIRST_FRAME:
        return f"the first parse frame announces {length} bytes, more than {MAX_FIRST_FRAME}"
    if len(pending) < LENGTH_BYTES + length:
        return WAIT
    body = _decode_body(bytes(pending[LENGTH_BYTES : LENGTH_BYTES + length]))
    if isinstance(body, str):
        return body
    return _request_refusal(body, spawn_path, roots)


def _decode_body(frame: bytes) -> dict[str, Any] | str:
    try:
        decoded = msgspec.msgpack.decode(frame)
    except (msgspec.DecodeError, ValueError, RecursionError) as exc:
        return f"the first parse frame is not msgpack: {exc}"
    if not isinstance(decoded, list) or len(decoded) < 2 or not isinstance(decoded[1], dict):
        return "the first parse frame is not a response frame with a body"
    body: dict[str, Any] = decoded[1]
    return body


def _request_refusal(body: dict[str, Any], spawn_path: str, roots: tuple[Path, ...]) -> str:
    if body.get("type") != PARSE_REQUEST:
        return f"the first parse frame is a {str(body.get('type'))[:100]!r}, not a {PARSE_REQUEST}"
    file, bundle_path = body.get("file"), body.get("bundle_path")
    if file != spawn_path:
        return f"the parse request names {str(file)[:1000]!r}, the spawn named {spawn_path!r}"
    if not isinstance(bundle_path, str):
        return "the parse request has no bundle_path string"
    return directory_refusal(bundle_path, roots)
