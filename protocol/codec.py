"""Sans-IO codec: bytes in, typed messages out, and back.

``encode``/``decode`` handle one message body (a ZeroMQ frame). :class:`FrameBuffer` adds the
4-byte big-endian length prefix used on stream transports (the gateway-forker socketpair, worker
reports). Nothing here touches a socket, a clock or ``os``; every failure on input is one of the
:mod:`protocol.errors` classes and nothing else escapes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import msgpack

from protocol.errors import (
    LocalProtocolError,
    MalformedMessage,
    OversizedMessage,
    ProtocolError,
    TruncatedMessage,
    UnknownMessageType,
    VersionMismatch,
)
from protocol.limits import (
    LENGTH_PREFIX,
    MAX_CONTAINER,
    MAX_DATA,
    MAX_DEPTH,
    MAX_FRAME,
    MAX_ID,
    MAX_STR,
    PROTOCOL_VERSION,
)
from protocol.messages import MESSAGE_TYPES, Message

_ID_PATTERN = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_ID}}}")
_RESERVED = ("v", "t")
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
"""The range of a msgpack integer."""


def _reject_ext(code: int, data: bytes) -> Any:
    raise MalformedMessage(f"msgpack ext type {code} is not allowed")


# msgpack decodes the timestamp ext (-1) itself, without calling ``ext_hook``, and its
# ``strict_map_key`` lets ``bin`` keys through. These hooks see every array and map as it is
# completed, so both are refused while unpacking (SPEC.md section 1, step 2), not later as a field of
# the wrong kind, or not at all in a frame that fails step 4 or 5.
def _unpacked_map(value: dict[str, Any]) -> dict[str, Any]:
    if bytes in map(type, value):
        raise MalformedMessage("a map key is not a string")
    if msgpack.Timestamp in map(type, value.values()):
        raise MalformedMessage("msgpack ext type -1 (timestamp) is not allowed")
    return value


def _unpacked_array(value: list[Any]) -> list[Any]:
    if msgpack.Timestamp in map(type, value):
        raise MalformedMessage("msgpack ext type -1 (timestamp) is not allowed")
    return value


_UNPACK_LIMITS: dict[str, Any] = {
    "raw": False,
    "strict_map_key": True,
    "use_list": True,
    "ext_hook": _reject_ext,
    "object_hook": _unpacked_map,
    "list_hook": _unpacked_array,
    "max_str_len": MAX_STR,
    "max_bin_len": MAX_DATA,
    "max_array_len": MAX_CONTAINER,
    "max_map_len": MAX_CONTAINER,
    "max_ext_len": MAX_STR,
    "timestamp": 0,
}


def _check_str(value: Any) -> bool:
    return isinstance(value, str)


def _check_id(value: Any) -> bool:
    return isinstance(value, str) and _ID_PATTERN.fullmatch(value) is not None


def _check_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_float(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _check_bytes(value: Any) -> bool:
    return isinstance(value, bytes)


def _check_map(value: Any) -> bool:
    return isinstance(value, dict) and _plain_data(value, MAX_DEPTH)


def _plain_data(value: Any, depth: int) -> bool:
    """Maps with string keys, arrays and scalars only, nested at most ``depth`` deep."""
    if isinstance(value, dict):
        return depth > 0 and all(isinstance(k, str) and _plain_data(v, depth - 1) for k, v in value.items())
    if isinstance(value, list):
        return depth > 0 and all(_plain_data(v, depth - 1) for v in value)
    return value is None or isinstance(value, (str, bytes, int, float, bool))


def _encodable(value: Any) -> bool:
    """Whether msgpack can pack ``value`` and a decoder accepts it: the size limits of SPEC.md,
    UTF-8-encodable strings (no lone surrogates), integers in msgpack's range."""
    if isinstance(value, str):
        if value.isascii():
            return len(value) <= MAX_STR
        if len(value) > MAX_STR:
            return False
        try:
            return len(value.encode("utf-8")) <= MAX_STR
        except UnicodeEncodeError:
            return False
    if isinstance(value, bytes):
        return len(value) <= MAX_DATA
    if value is None or isinstance(value, (bool, float)):
        return True
    if isinstance(value, int):
        return _INT_MIN <= value <= _INT_MAX
    if isinstance(value, dict):
        return len(value) <= MAX_CONTAINER and all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, list):
        return len(value) <= MAX_CONTAINER and all(_encodable(v) for v in value)
    return False


_FIELD_CHECKS: dict[str, Callable[[Any], bool]] = {
    "str": _check_str,
    "RequestId": _check_id,
    "int": _check_int,
    "float": _check_float,
    "bool": _check_bool,
    "bytes": _check_bytes,
    "dict[str, Any]": _check_map,
}

_BY_TYPE: dict[str, type[Message]] = {cls.TYPE: cls for cls in MESSAGE_TYPES}
_FIELDS: dict[type[Message], tuple[tuple[str, Callable[[Any], bool], bool], ...]] = {
    cls: tuple(
        (
            f.name,
            _FIELD_CHECKS[str(f.type)],
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    )
    for cls in MESSAGE_TYPES
}


def encode(message: Message) -> bytes:
    """Encode one message body. Raises :class:`LocalProtocolError` if ``message`` is invalid."""
    cls = type(message)
    if cls not in _FIELDS:
        raise LocalProtocolError(f"{cls.__name__} is not a protocol message")
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "t": cls.TYPE}
    for name, check, _required in _FIELDS[cls]:
        value = getattr(message, name)
        if not (check(value) and _encodable(value)):
            raise LocalProtocolError(f"{cls.TYPE}.{name} has an invalid value {value!r:.80}")
        body[name] = value
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    if len(packed) > MAX_FRAME:
        raise LocalProtocolError(f"{cls.TYPE} encodes to {len(packed)} bytes, over {MAX_FRAME}")
    return packed


def decode(frame: bytes) -> Message:
    """Decode one message body, validating it strictly against its type's fields."""
    if len(frame) > MAX_FRAME:
        raise OversizedMessage(f"frame of {len(frame)} bytes exceeds {MAX_FRAME}")
    return _from_body(_unpack(frame))


def _unpack(frame: bytes) -> Any:
    try:
        return msgpack.unpackb(frame, **_UNPACK_LIMITS)
    except ProtocolError:
        raise
    except msgpack.ExtraData as exc:
        raise MalformedMessage("trailing bytes after the message") from exc
    except (msgpack.OutOfData, EOFError) as exc:
        raise TruncatedMessage("the frame ends inside the message") from exc
    except ValueError as exc:
        # msgpack reports a broken limit as ValueError("... exceeds max_..._len(...)") and a short
        # buffer as ValueError("Unpack failed: incomplete input"). An ext of any size is malformed.
        if "max_ext_len" in str(exc):
            raise MalformedMessage("msgpack ext types are not allowed") from exc
        if "exceeds max" in str(exc):
            raise OversizedMessage(str(exc)) from exc
        if "incomplete input" in str(exc):
            raise TruncatedMessage("the frame ends inside the message") from exc
        raise MalformedMessage(f"not msgpack: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        # FormatError, StackError, TypeError (unhashable key), RecursionError...
        raise MalformedMessage(f"not msgpack: {type(exc).__name__}: {exc}") from exc


def _from_body(body: Any) -> Message:
    if not isinstance(body, dict):
        raise MalformedMessage(f"a message is a map, not {type(body).__name__}")
    version = body.get("v")
    if not _check_int(version):
        raise MalformedMessage("missing or non-integer 'v'")
    if version != PROTOCOL_VERSION:
        raise VersionMismatch(f"protocol version {version} is not supported (this side speaks {PROTOCOL_VERSION})")
    type_name = body.get("t")
    if not isinstance(type_name, str):
        raise MalformedMessage("missing or non-string 't'")
    cls = _BY_TYPE.get(type_name)
    if cls is None:
        raise UnknownMessageType(f"unknown message type {type_name[:64]!r}")
    return _build(cls, body)


def _build(cls: type[Message], body: dict[str, Any]) -> Message:
    fields = _FIELDS[cls]
    known = {name for name, _, _ in fields}
    extra = [key for key in body if key not in known and key not in _RESERVED]
    if extra:
        raise MalformedMessage(f"{cls.TYPE} has unknown fields {sorted(extra)[:5]}")
    values: dict[str, Any] = {}
    for name, check, required in fields:
        if name not in body:
            if required:
                raise MalformedMessage(f"{cls.TYPE} lacks field {name!r}")
            continue
        value = body[name]
        if not check(value):
            raise MalformedMessage(f"{cls.TYPE}.{name} has the wrong type or form")
        values[name] = float(value) if check is _check_float else value
    return cls(**values)


def frame(message: Message) -> bytes:
    """Encode ``message`` with the length prefix used on stream transports."""
    body = encode(message)
    return len(body).to_bytes(LENGTH_PREFIX, "big") + body


class FrameBuffer:
    """Reassembles length-prefixed messages from a byte stream.

    ``feed`` returns every complete message. A bad frame poisons the buffer (a stream cannot
    resynchronise) and the caller closes the transport: ``feed`` raises the frame's
    :class:`ProtocolError` at once, or, if messages before the bad frame completed in the same
    call, returns those and raises on the next ``feed`` or ``close``, so what is delivered does not
    depend on how the stream was split into reads. Once poisoned, ``feed`` and ``close`` keep
    raising the same error. ``close`` at EOF raises :class:`TruncatedMessage` if a partial message
    is left.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._poisoned: ProtocolError | None = None

    def feed(self, data: bytes) -> list[Message]:
        """Add received bytes; return the messages they complete, in order."""
        if self._poisoned is not None:
            raise self._poisoned
        self._buffer += data
        messages: list[Message] = []
        try:
            while (message := self._next()) is not None:
                messages.append(message)
        except ProtocolError as exc:
            self._poisoned = exc
            del self._buffer[:]
            if not messages:
                raise
        return messages

    def _next(self) -> Message | None:
        if len(self._buffer) < LENGTH_PREFIX:
            return None
        size = int.from_bytes(self._buffer[:LENGTH_PREFIX], "big")
        if size > MAX_FRAME:
            raise OversizedMessage(f"announced frame of {size} bytes exceeds {MAX_FRAME}")
        end = LENGTH_PREFIX + size
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[LENGTH_PREFIX:end])
        del self._buffer[:end]
        return decode(body)

    def close(self) -> None:
        """Declare EOF; raise :class:`TruncatedMessage` if bytes of an unfinished message remain,
        or the error that poisoned the stream."""
        if self._poisoned is not None:
            raise self._poisoned
        if self._buffer:
            raise TruncatedMessage(f"stream ended with {len(self._buffer)} bytes of an unfinished message")
