"""The gate on a worker's first input: the ``DagFileParseRequest`` must name the file the spawn named.

Why: the path check on ``spawn`` alone is not enough. A worker parses the file named in the first
frame the client writes to its ``requests`` channel (Airflow's ``DagFileParseRequest``), so a
client could spawn an allowed path and then ask for any other file. The gateway therefore holds a
worker's input until that first frame is complete and checks it: ``file`` must be the spawn's
``path`` (already checked against the roots) and ``bundle_path``, which the worker puts on
``sys.path``, must lie under a root too (checked off the loop, like every filesystem check).

The frame is decoded against a schema that keeps only those three strings: everything else is
skipped, not built, so a hostile frame cannot make the lean gateway allocate more than the frame
itself, and the frame is bounded by :data:`MAX_FIRST_FRAME`.

Airflow's framing (``airflow.sdk.execution_time.comms``): a 4-byte big-endian length, then a
msgpack array ``[id, body, error]`` whose ``body`` is the request's ``model_dump()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

LENGTH_BYTES = 4
MAX_FIRST_FRAME = 8 * 1024 * 1024
PARSE_REQUEST = "DagFileParseRequest"


class Verdict:
    """Sentinel for "the first frame is not complete yet"."""


WAIT = Verdict()


@dataclass(frozen=True)
class Passed:
    """The frame names the spawn's file; ``bundle_path`` still needs its filesystem check."""

    bundle_path: str


class _Body(msgspec.Struct):
    type: str | None = None
    file: str | None = None
    bundle_path: str | None = None


class _Frame(msgspec.Struct, array_like=True):
    id: msgspec.Raw
    body: _Body


def check_first_frame(pending: bytes | bytearray, spawn_path: str) -> Verdict | Passed | str:
    """``WAIT`` until the first frame is in ``pending``; then :class:`Passed` or why it is refused."""
    if len(pending) < LENGTH_BYTES:
        return WAIT
    length = int.from_bytes(pending[:LENGTH_BYTES], "big")
    if length > MAX_FIRST_FRAME:
        return f"the first parse frame announces {length} bytes, more than {MAX_FIRST_FRAME}"
    if len(pending) < LENGTH_BYTES + length:
        return WAIT
    try:
        frame = msgspec.msgpack.decode(bytes(pending[LENGTH_BYTES : LENGTH_BYTES + length]), type=_Frame)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError) as exc:
        return f"the first parse frame is not a parse request frame: {str(exc)[:200]}"
    return _request_verdict(frame.body, spawn_path)


def _request_verdict(body: _Body, spawn_path: str) -> Passed | str:
    if body.type != PARSE_REQUEST:
        return f"the first parse frame is a {str(body.type)[:100]!r}, not a {PARSE_REQUEST}"
    if body.file != spawn_path:
        return f"the parse request names {str(body.file)[:1000]!r}, the spawn named {spawn_path!r}"
    if body.bundle_path is None:
        return "the parse request has no bundle_path string"
    return Passed(body.bundle_path)
