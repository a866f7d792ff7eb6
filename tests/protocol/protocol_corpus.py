"""The codec's fuzz corpus and the properties every input must satisfy.

Shared by ``make_fuzz_corpus.py`` (writes the corpus), ``test_protocol_fuzz_replay.py`` (replays it
in ``make test``) and ``fuzz_codec.py`` (the atheris harness, which adds inputs to it).

Every corpus file is fed to the codec twice: as one message body (``decode``, a ZeroMQ frame) and as
a byte stream (``FrameBuffer``). :func:`check_input` asserts that only :class:`ProtocolError`
subclasses escape, that whatever decodes round-trips, and that what a stream delivers does not depend
on how its bytes are split into reads. It returns the input's *outcome*, which the manifest
``codec-expected.json`` records for the generated files, so a behaviour change shows up as a diff.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from protocol.codec import FrameBuffer, decode, encode, frame
from protocol.errors import (
    MalformedMessage,
    OversizedMessage,
    ProtocolError,
    TruncatedMessage,
    UnknownMessageType,
    VersionMismatch,
)
from protocol.messages import MESSAGE_TYPES, Message

FUZZ_ROOT = Path(__file__).resolve().parent.parent / "fuzz_corpus"
CORPUS_DIR = FUZZ_ROOT / "codec"
MANIFEST = FUZZ_ROOT / "codec-expected.json"
ERRORS: tuple[type[ProtocolError], ...] = (
    MalformedMessage,
    TruncatedMessage,
    OversizedMessage,
    UnknownMessageType,
    VersionMismatch,
)
BYTE_BY_BYTE_LIMIT = 4096
"""Inputs up to this size are also fed to a FrameBuffer one byte at a time."""

Outcome = dict[str, Any]


def same(a: Message, b: Message) -> bool:
    """Equal messages, NaN included (compared through the encoding)."""
    return type(a) is type(b) and encode(a) == encode(b)


def check_message(message: Message) -> None:
    """A decoded message is a protocol type and survives encode/decode and frame/FrameBuffer."""
    assert type(message) in MESSAGE_TYPES, type(message)
    again = decode(encode(message))
    assert same(again, message), (message, again)
    [streamed] = FrameBuffer().feed(frame(message))
    assert same(streamed, message)


def decode_outcome(data: bytes) -> str:
    try:
        message = decode(data)
    except ProtocolError as exc:
        assert type(exc) in ERRORS, f"{type(exc).__name__} is not one of the documented errors"
        assert exc.code == type(exc).code
        return type(exc).__name__
    check_message(message)
    return message.TYPE


def stream_outcome(chunks: list[bytes]) -> list[str]:
    """The types delivered, then the error that ended the stream or ``"eof"``."""
    buffer = FrameBuffer()
    delivered: list[str] = []
    messages: list[Message] = []
    closing = False
    try:
        for chunk in chunks:
            messages += buffer.feed(chunk)
        closing = True
        buffer.close()
    except ProtocolError as exc:
        assert type(exc) in ERRORS, f"{type(exc).__name__} is not one of the documented errors"
        if not closing:  # poisoned: it keeps raising the same error
            for again in (lambda: buffer.feed(b"\x00\x00\x00\x00"), buffer.close):
                try:
                    again()
                except ProtocolError as repeated:
                    assert repeated is exc
                else:
                    raise AssertionError("a poisoned FrameBuffer accepted more input") from None
        end = type(exc).__name__
    else:
        end = "eof"
    for message in messages:
        check_message(message)
        delivered.append(message.TYPE)
    return [*delivered, end]


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def check_input(data: bytes) -> Outcome:
    """Run ``data`` through the codec; assert the properties above; return its outcome."""
    outcome: Outcome = {"decode": decode_outcome(data), "stream": stream_outcome([data])}
    sizes = [7, 4096]
    if len(data) <= BYTE_BY_BYTE_LIMIT:
        sizes.append(1)
    for size in sizes:
        assert stream_outcome(split(data, size)) == outcome["stream"], f"reads of {size} bytes"
    # Uneven reads, derived from the content so that a replay is reproducible.
    digest = hashlib.sha256(data).digest()
    chunks, start = [], 0
    for byte in digest * (1 + len(data) // 1024):
        if start >= len(data):
            break
        chunks.append(data[start : start + byte + 1])
        start += byte + 1
    assert stream_outcome(chunks) == outcome["stream"], "uneven reads"
    return outcome


def corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS_DIR.iterdir() if p.is_file()) if CORPUS_DIR.is_dir() else []


def load_manifest() -> dict[str, Outcome]:
    if not MANIFEST.exists():
        return {}
    manifest: dict[str, Outcome] = json.loads(MANIFEST.read_text(encoding="utf-8"))
    return manifest
