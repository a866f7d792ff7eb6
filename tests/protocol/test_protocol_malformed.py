"""Every bad input of SPEC.md section 1 raises its one documented error class, with its code.

Each case is checked twice: as a body (``decode``, a ZeroMQ frame) and as a length-prefixed frame on
a stream (``FrameBuffer``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_strategies import (
    EXAMPLES,
    MAP_KIND,
    WRONG_VALUES,
    any_message,
    body_of,
    deep_map,
    field_kinds,
    nested_arrays,
    nested_maps,
    pack,
)

from protocol.codec import FrameBuffer, decode, encode, frame
from protocol.errors import (
    ErrorCode,
    LocalProtocolError,
    MalformedMessage,
    OversizedMessage,
    ProtocolError,
    TruncatedMessage,
    UnknownMessageType,
    VersionMismatch,
)
from protocol.limits import LENGTH_PREFIX, MAX_CONTAINER, MAX_DATA, MAX_DEPTH, MAX_FRAME, MAX_ID, MAX_STR
from protocol.messages import (
    MESSAGE_TYPES,
    Error,
    Exited,
    Heartbeat,
    Hello,
    Input,
    Message,
    ProbeReport,
    Spawn,
    Started,
    StatusReply,
)

CODES: dict[type[ProtocolError], ErrorCode] = {
    MalformedMessage: ErrorCode.MALFORMED,
    TruncatedMessage: ErrorCode.TRUNCATED,
    OversizedMessage: ErrorCode.OVERSIZED,
    UnknownMessageType: ErrorCode.UNKNOWN_TYPE,
    VersionMismatch: ErrorCode.VERSION_MISMATCH,
}
STACK_DEPTH = 1024
"""SPEC.md section 1: more than this many nested arrays/maps is "nesting too deep"."""


def prefixed(body: bytes) -> bytes:
    return len(body).to_bytes(LENGTH_PREFIX, "big") + body


def expect(data: bytes, error: type[ProtocolError]) -> ProtocolError:
    """``data`` as a body and as a stream frame raises exactly ``error`` with its code."""
    with pytest.raises(ProtocolError) as info:
        decode(data)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert info.value.code is CODES[error]
    assert info.value.code == CODES[error].value
    assert info.value.message == str(info.value)
    if len(data) <= MAX_FRAME:
        with pytest.raises(ProtocolError) as streamed:
            FrameBuffer().feed(prefixed(data))
        assert type(streamed.value) is error, f"stream: {type(streamed.value).__name__}: {streamed.value}"
    return info.value


def expect_ok(data: bytes) -> Message:
    message = decode(data)
    assert FrameBuffer().feed(prefixed(data)) == [message]
    return message


def test_error_classes() -> None:
    for error, code in CODES.items():
        assert issubclass(error, ProtocolError)
        assert error.code is code
        assert error("boom").code == code.value
    assert not issubclass(LocalProtocolError, ProtocolError), "a local bug is not the peer's fault"


# --- step 1: frame size --------------------------------------------------------------------------


def test_frame_over_max_frame_is_oversized_before_parsing() -> None:
    expect(b"\xc1" * (MAX_FRAME + 1), OversizedMessage)  # garbage, but too long comes first
    body = pack({"v": 1, "t": "status_reply", "id": "a", "status": {k: b"\x00" * MAX_DATA for k in "abcd"}})
    assert len(body) > MAX_FRAME
    expect(body, OversizedMessage)
    expect(b"\x80" + b"\x00" * MAX_FRAME, OversizedMessage)


@pytest.mark.parametrize("announced", [MAX_FRAME + 1, 2 * MAX_FRAME, 2**32 - 1])
def test_stream_length_over_max_frame_is_oversized_before_any_body_byte(announced: int) -> None:
    buffer = FrameBuffer()
    with pytest.raises(OversizedMessage) as info:
        buffer.feed(announced.to_bytes(LENGTH_PREFIX, "big"))
    assert info.value.code is ErrorCode.OVERSIZED


def test_stream_length_prefix_split_across_feeds() -> None:
    buffer = FrameBuffer()
    announced = (MAX_FRAME + 1).to_bytes(LENGTH_PREFIX, "big")
    assert buffer.feed(announced[:2]) == []
    with pytest.raises(OversizedMessage):
        buffer.feed(announced[2:])


def test_stream_length_of_exactly_max_frame_waits_for_the_body() -> None:
    buffer = FrameBuffer()
    assert buffer.feed(MAX_FRAME.to_bytes(LENGTH_PREFIX, "big") + b"\x80") == []
    with pytest.raises(TruncatedMessage):
        buffer.close()


# --- step 2: msgpack -----------------------------------------------------------------------------

NOT_MSGPACK = {
    "reserved-c1": b"\xc1",
    "reserved-c1-with-more": b"\xc1\x00\x01",
    "c1-as-map-key": b"\x81\xc1\x00",
    "c1-inside-body": b"\x82\xa1v\x01\xa1t\xc1",
    "invalid-utf8-str": b"\xa2\xff\xfe",
    "invalid-utf8-key": b"\x81\xa1\xff\x01",
    "invalid-utf8-t": b"\x82\xa1v\x01\xa1t\xa1\xff",
    "overlong-utf8": b"\xa2\xc0\xaf",
    "surrogate-utf8": b"\xa3\xed\xa0\x80",
}


@pytest.mark.parametrize("data", NOT_MSGPACK.values(), ids=NOT_MSGPACK.keys())
def test_not_msgpack_is_malformed(data: bytes) -> None:
    expect(data, MalformedMessage)


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.TYPE)
def test_trailing_bytes_are_malformed(cls: type[Message]) -> None:
    body = encode(EXAMPLES[cls])
    expect(body + b"\x00", MalformedMessage)
    expect(body + b"\xc0", MalformedMessage)
    expect(body + b"\xc1", MalformedMessage)
    expect(body + body, MalformedMessage)
    expect(body + encode(Heartbeat())[:1], MalformedMessage)


def test_two_nils_are_trailing_bytes() -> None:
    expect(b"\xc0\xc0", MalformedMessage)


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.TYPE)
def test_truncated_at_every_cut_point(cls: type[Message]) -> None:
    message = EXAMPLES[cls]
    body = encode(message)
    for cut in range(len(body)):
        expect(body[:cut], TruncatedMessage)
    framed = frame(message)
    for cut in range(1, len(framed)):
        buffer = FrameBuffer()
        assert buffer.feed(framed[:cut]) == [], cut
        with pytest.raises(TruncatedMessage) as info:
            buffer.close()
        assert info.value.code is ErrorCode.TRUNCATED
    buffer = FrameBuffer()
    assert buffer.feed(framed) == [message]
    buffer.close()


def test_empty_body_is_truncated() -> None:
    expect(b"", TruncatedMessage)


def test_str_and_bin_cut_inside_are_truncated_even_when_announced_over_the_limit() -> None:
    # SPEC.md 1.2: a str/bin/ext limit is checked once its bytes are present.
    expect(b"\xdb" + (MAX_STR + 1).to_bytes(4, "big") + b"xx", TruncatedMessage)
    expect(b"\xc6" + (MAX_DATA + 1).to_bytes(4, "big") + b"xx", TruncatedMessage)
    expect(b"\xc9" + (MAX_STR + 1).to_bytes(4, "big") + b"\x05xx", TruncatedMessage)


# ext types: as a value where, without the ext rule, the body would fail a later step differently.


def raw_ext(code: int, data: bytes) -> bytes:
    """A msgpack ext object (msgpack.ExtType cannot pack negative codes)."""
    fixed = {1: b"\xd4", 2: b"\xd5", 4: b"\xd6", 8: b"\xd7", 16: b"\xd8"}
    kind = code.to_bytes(1, "big", signed=True)
    if len(data) in fixed:
        return fixed[len(data)] + kind + data
    if len(data) < 2**8:
        return b"\xc7" + len(data).to_bytes(1, "big") + kind + data
    if len(data) < 2**16:
        return b"\xc8" + len(data).to_bytes(2, "big") + kind + data
    return b"\xc9" + len(data).to_bytes(4, "big") + kind + data


PLACEHOLDER = msgpack.ExtType(99, b"@@placeholder@@")


def embed(obj: Any, raw: bytes) -> bytes:
    """``pack(obj)`` with the packed :data:`PLACEHOLDER` inside it replaced by ``raw``."""
    packed = pack(obj)
    marker = pack(PLACEHOLDER)
    assert packed.count(marker) == 1
    return packed.replace(marker, raw)


EXT_VALUES: dict[str, bytes] = {
    **{
        f"ext{code}-len{size}": raw_ext(code, b"\x07" * size)
        for code in (0, 1, 42, 127, -2, -128)
        for size in (0, 1, 2, 4, 8, 16, 3, 300)
    },
    "ext5-len70000": raw_ext(5, b"\x00" * 70_000),
    "ext5-over-max-data": raw_ext(5, b"\x00" * (MAX_DATA + 1)),
    "timestamp32": pack(msgpack.Timestamp(1_700_000_000, 0)),
    "timestamp64": pack(msgpack.Timestamp(2**33, 5)),
    "timestamp96": pack(msgpack.Timestamp(-1, 0)),
    "timestamp-len1": raw_ext(-1, b"\x00"),
    "timestamp-len5": raw_ext(-1, b"\x00" * 5),
    "timestamp-len20000": raw_ext(-1, b"\x00" * 20_000),
}


def test_raw_ext_encodes_like_msgpack() -> None:
    for size in (0, 1, 3, 4, 300, 70_000):
        assert raw_ext(5, b"\x01" * size) == pack(msgpack.ExtType(5, b"\x01" * size))
    assert raw_ext(-1, b"\x00" * 4) == pack(msgpack.Timestamp(0, 0))


@pytest.mark.parametrize("ext", EXT_VALUES.values(), ids=EXT_VALUES.keys())
def test_ext_types_are_malformed(ext: bytes) -> None:
    expect(ext, MalformedMessage)  # the whole body
    expect(embed({"v": 2, "t": "heartbeat", "x": PLACEHOLDER}, ext), MalformedMessage)  # not version_mismatch
    expect(embed({"v": 1, "t": "no_such_type", "x": PLACEHOLDER}, ext), MalformedMessage)  # not unknown_type
    expect(embed({"v": 2, "x": [[PLACEHOLDER]]}, ext), MalformedMessage)
    expect(embed({"v": 2, "x": [{"k": PLACEHOLDER}]}, ext), MalformedMessage)
    expect(embed({"v": PLACEHOLDER, "t": "heartbeat"}, ext), MalformedMessage)
    expect(embed({"v": 2, "t": PLACEHOLDER}, ext), MalformedMessage)
    expect(embed({"v": 2, "t": "heartbeat", "x": 1, "y": [PLACEHOLDER, 2]}, ext), MalformedMessage)
    hello = body_of(EXAMPLES[Hello])
    hello["config"] = {"k": PLACEHOLDER}
    expect(embed(hello, ext), MalformedMessage)


@pytest.mark.parametrize("name", ["timestamp32", "timestamp64", "timestamp96"])
def test_valid_timestamp_ext_is_malformed(name: str) -> None:
    raw = EXT_VALUES[name]
    assert isinstance(msgpack.unpackb(raw), msgpack.Timestamp)  # the bytes are a valid timestamp
    expect(raw, MalformedMessage)
    expect(b"\x82\xa1v\x02\xa1x" + raw, MalformedMessage)
    expect(b"\x81" + raw + b"\x01", MalformedMessage)  # as a map key


NON_STRING_KEYS: dict[str, Any] = {
    "int": 1,
    "negative-int": -1,
    "zero": 0,
    "float": 1.5,
    "nil": None,
    "bool": True,
    "bin": b"v",
    "bin-extra": b"extra",
}


@pytest.mark.parametrize("key", NON_STRING_KEYS.values(), ids=NON_STRING_KEYS.keys())
def test_non_string_keys_are_malformed(key: Any) -> None:
    for version in (1, 2):  # v=2 would be version_mismatch if the key were accepted
        body: dict[Any, Any] = {"v": version, "t": "heartbeat", key: 1}
        expect(pack(body), MalformedMessage)
    expect(pack({"v": 1, "t": "no_such_type", key: 1}), MalformedMessage)
    for config in ({key: 1}, {"a": {key: 1}}, {"a": [{key: 1}]}, {"a": [[{"b": {key: None}}]]}):
        hello = body_of(EXAMPLES[Hello])
        hello["config"] = config
        expect(pack(hello), MalformedMessage)
        exited = body_of(EXAMPLES[Exited])
        exited["stats"] = config
        expect(pack(exited), MalformedMessage)


@pytest.mark.parametrize("key", [b"\x90", b"\x80", b"\x91\x01", b"\x81\xa1a\x01"], ids=["[]", "{}", "[1]", "{a:1}"])
def test_container_keys_are_malformed(key: bytes) -> None:
    expect(b"\x81" + key + b"\x01", MalformedMessage)
    expect(b"\x83\xa1v\x02\xa1t\xa9heartbeat" + key + b"\xc0", MalformedMessage)


def raw_nested_arrays(levels: int) -> bytes:
    return b"\x91" * levels + b"\xc0"


def test_nesting_too_deep_is_malformed() -> None:
    expect(raw_nested_arrays(STACK_DEPTH + 1), MalformedMessage)
    expect(b"\x81\xa1a" * (STACK_DEPTH + 1) + b"\xc0", MalformedMessage)
    expect(raw_nested_arrays(50_000), MalformedMessage)
    # A body (level 1) with v=2 and an extra value of 1023 levels passes step 2 and fails step 4...
    head = b"\x83\xa1v\x02\xa1t\xa9heartbeat\xa1x"
    expect(head + raw_nested_arrays(STACK_DEPTH - 1), VersionMismatch)
    # ...with one level more it is too deep.
    expect(head + raw_nested_arrays(STACK_DEPTH), MalformedMessage)


MAP_FIELDS = [(cls, name) for cls in MESSAGE_TYPES for name, kind, _ in field_kinds(cls) if kind == MAP_KIND]


@pytest.mark.parametrize(("cls", "name"), MAP_FIELDS, ids=[f"{c.TYPE}.{n}" for c, n in MAP_FIELDS])
def test_map_field_nesting_limit(cls: type[Message], name: str) -> None:
    body = body_of(EXAMPLES[cls])
    body[name] = deep_map(MAX_DEPTH)
    assert getattr(expect_ok(pack(body)), name) == deep_map(MAX_DEPTH)
    body[name] = deep_map(MAX_DEPTH + 1)
    expect(pack(body), MalformedMessage)
    body[name] = {"a": [1, {"b": None}], "c": deep_map(MAX_DEPTH - 1)}
    expect_ok(pack(body))
    body[name] = {"a": 1, "c": deep_map(MAX_DEPTH)}
    expect(pack(body), MalformedMessage)
    for shape in (nested_maps, nested_arrays):
        body[name] = shape(MAX_DEPTH)
        assert getattr(expect_ok(pack(body)), name) == shape(MAX_DEPTH)
        body[name] = shape(MAX_DEPTH + 1)
        expect(pack(body), MalformedMessage)


def spawn_body(**changes: Any) -> dict[str, Any]:
    body = body_of(EXAMPLES[Spawn])
    body.update(changes)
    return body


def test_str_over_limit_is_oversized() -> None:
    assert isinstance(expect_ok(pack(spawn_body(path="p" * MAX_STR))), Spawn)
    expect(pack(spawn_body(path="p" * (MAX_STR + 1))), OversizedMessage)
    two_byte = "\u00e9" * (MAX_STR // 2)
    assert expect_ok(pack(spawn_body(path=two_byte))).path == two_byte  # type: ignore[attr-defined]
    expect(pack(spawn_body(path=two_byte + "x")), OversizedMessage)  # 16 KiB + 1 byte, fewer chars
    expect(pack(spawn_body(v=2, path="p" * (MAX_STR + 1))), OversizedMessage)  # step 2 before 4
    expect(pack(spawn_body(t="x" * (MAX_STR + 1))), OversizedMessage)
    expect(pack({"v": 1, "t": "heartbeat", "k" * (MAX_STR + 1): 1}), OversizedMessage)
    hello = body_of(EXAMPLES[Hello])
    hello["config"] = {"a": ["x" * (MAX_STR + 1)]}
    expect(pack(hello), OversizedMessage)


def test_bin_over_limit_is_oversized() -> None:
    body = body_of(EXAMPLES[Input])
    body["data"] = b"\x00" * MAX_DATA
    assert expect_ok(pack(body)) == Input(id=body["id"], data=body["data"])
    body["data"] = b"\x00" * (MAX_DATA + 1)
    expect(pack(body), OversizedMessage)
    body["v"] = 2
    expect(pack(body), OversizedMessage)


def test_array_over_limit_is_oversized() -> None:
    reply = body_of(EXAMPLES[StatusReply])
    reply["status"] = {"list": [None] * MAX_CONTAINER}
    assert len(expect_ok(pack(reply)).status["list"]) == MAX_CONTAINER  # type: ignore[attr-defined]
    reply["status"] = {"list": [None] * (MAX_CONTAINER + 1)}
    expect(pack(reply), OversizedMessage)
    expect(pack([None] * (MAX_CONTAINER + 1)), OversizedMessage)
    # Checked at the header, before the entries are read.
    expect(b"\xdd" + (MAX_CONTAINER + 1).to_bytes(4, "big"), OversizedMessage)
    expect(b"\x82\xa1v\x02\xa1x\xdd" + (2**32 - 1).to_bytes(4, "big"), OversizedMessage)


def test_map_over_limit_is_oversized() -> None:
    reply = body_of(EXAMPLES[StatusReply])
    reply["status"] = {str(i): None for i in range(MAX_CONTAINER)}
    expect_ok(pack(reply))
    reply["status"] = {str(i): None for i in range(MAX_CONTAINER + 1)}
    expect(pack(reply), OversizedMessage)
    expect(b"\xdf" + (MAX_CONTAINER + 1).to_bytes(4, "big"), OversizedMessage)
    expect(b"\xdf" + (2**32 - 1).to_bytes(4, "big"), OversizedMessage)


# --- step 3: not a map ---------------------------------------------------------------------------

NOT_MAPS: dict[str, Any] = {
    "nil": None,
    "true": True,
    "int": 1,
    "negative": -(2**63),
    "float": 1.5,
    "str": "hello",
    "bin": b"\x81\xa1v\x01",
    "empty-array": [],
    "array-of-body": [{"v": 1, "t": "heartbeat"}],
    "array-of-pairs": [["v", 1], ["t", "heartbeat"]],
}


@pytest.mark.parametrize("value", NOT_MAPS.values(), ids=NOT_MAPS.keys())
def test_body_not_a_map_is_malformed(value: Any) -> None:
    expect(pack(value), MalformedMessage)


# --- step 4: v -----------------------------------------------------------------------------------


def test_missing_v_is_malformed() -> None:
    expect(pack({"t": "heartbeat"}), MalformedMessage)
    expect(pack({}), MalformedMessage)
    expect(pack({"t": "no_such_type"}), MalformedMessage)  # step 4 before step 5
    expect(pack({"V": 1, "t": "heartbeat"}), MalformedMessage)


@pytest.mark.parametrize("version", [None, "1", 1.0, True, False, [1], {"v": 1}, b"\x01"], ids=repr)
def test_non_integer_v_is_malformed(version: Any) -> None:
    expect(pack({"v": version, "t": "heartbeat"}), MalformedMessage)
    expect(pack({"v": version, "t": "no_such_type"}), MalformedMessage)


@pytest.mark.parametrize("version", [0, 2, -1, 255, 2**64 - 1, -(2**63)])
def test_wrong_v_is_version_mismatch(version: int) -> None:
    expect(pack({"v": version, "t": "heartbeat"}), VersionMismatch)
    expect(pack({"v": version}), VersionMismatch)  # step 4 before step 5
    expect(pack({"v": version, "t": "no_such_type", "junk": [1]}), VersionMismatch)
    expect(pack({**spawn_body(), "v": version, "id": "", "timeout": "soon"}), VersionMismatch)


# --- step 5: t -----------------------------------------------------------------------------------


@pytest.mark.parametrize("type_name", [None, 1, True, 1.0, b"heartbeat", ["heartbeat"], {"t": "heartbeat"}], ids=repr)
def test_non_string_t_is_malformed(type_name: Any) -> None:
    expect(pack({"v": 1, "t": type_name}), MalformedMessage)


def test_missing_t_is_malformed() -> None:
    expect(pack({"v": 1}), MalformedMessage)
    expect(pack({"v": 1, "id": "req-1"}), MalformedMessage)


UNKNOWN_TYPES = [
    "",
    "Hello",
    "HEARTBEAT",
    "hello ",
    " hello",
    "hello\x00",
    "status_request",
    "StatusRequest",
    "v",
    "message",
    "x" * MAX_STR,
]


@pytest.mark.parametrize("type_name", UNKNOWN_TYPES, ids=lambda t: repr(t[:20]))
def test_unknown_t_is_unknown_type(type_name: str) -> None:
    expect(pack({"v": 1, "t": type_name}), UnknownMessageType)
    expect(pack({"v": 1, "t": type_name, "id": 5, "junk": None}), UnknownMessageType)  # before step 6


# --- step 6: fields ------------------------------------------------------------------------------

REQUIRED = [(cls, name) for cls in MESSAGE_TYPES for name, _kind, optional in field_kinds(cls) if not optional]


@pytest.mark.parametrize(("cls", "name"), REQUIRED, ids=[f"{c.TYPE}.{n}" for c, n in REQUIRED])
def test_missing_field_is_malformed(cls: type[Message], name: str) -> None:
    body = body_of(EXAMPLES[cls])
    del body[name]
    error = expect(pack(body), MalformedMessage)
    assert name in str(error)


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.TYPE)
def test_extra_field_is_malformed(cls: type[Message]) -> None:
    own = {name for name, _kind, _optional in field_kinds(cls)}
    foreign = sorted({name for other in MESSAGE_TYPES for name, _, _ in field_kinds(other)} - own)
    for extra in ["extra", "V", "T", "", "id " if "id" in own else "id", *foreign[:4]]:
        body = body_of(EXAMPLES[cls])
        body[extra] = 1
        expect(pack(body), MalformedMessage)


FIELDS = [(cls, name, kind) for cls in MESSAGE_TYPES for name, kind, _optional in field_kinds(cls)]


@pytest.mark.parametrize(("cls", "name", "kind"), FIELDS, ids=[f"{c.TYPE}.{n}" for c, n, _ in FIELDS])
def test_wrong_field_kind_is_malformed(cls: type[Message], name: str, kind: str) -> None:
    for wrong in WRONG_VALUES[kind]:
        body = body_of(EXAMPLES[cls])
        body[name] = wrong
        expect(pack(body), MalformedMessage)


def test_bool_is_not_an_int_nor_a_float() -> None:
    expect(pack({**body_of(EXAMPLES[Started]), "pid": True}), MalformedMessage)
    expect(pack({**body_of(EXAMPLES[Started]), "fork_ms": False}), MalformedMessage)
    expect(pack({**body_of(EXAMPLES[ProbeReport]), "ok": 1}), MalformedMessage)


def test_request_id_rule() -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"
    for request_id in ["a", "0", ".", ":", "-", "_", "x" * MAX_ID, alphabet[:MAX_ID], alphabet[-MAX_ID:]]:
        assert expect_ok(pack(spawn_body(id=request_id))).id == request_id  # type: ignore[attr-defined]
    for request_id in ["", "x" * (MAX_ID + 1), "a b", "a/b", "a\tb", "a\n", "\u00e9", "\uff10", "a+b", "*"]:
        expect(pack(spawn_body(id=request_id)), MalformedMessage)
    # `error.id` is a plain str: empty for session-level errors, any text otherwise.
    assert expect_ok(pack(body_of(Error(id="", code="malformed", message="x")))) == Error("", "malformed", "x")
    assert expect_ok(pack(body_of(Error(id="a b", code="c", message="")))) == Error("a b", "c", "")


# --- FrameBuffer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "leftover", [b"\x00", b"\x00\x00", b"\x00\x00\x00", b"\x00\x00\x00\x05", b"\x00\x00\x00\x05\x85"]
)
def test_close_with_leftover_bytes_is_truncated(leftover: bytes) -> None:
    buffer = FrameBuffer()
    assert buffer.feed(frame(EXAMPLES[Hello]) + leftover) == [EXAMPLES[Hello]]
    with pytest.raises(TruncatedMessage) as info:
        buffer.close()
    assert info.value.code is ErrorCode.TRUNCATED


BAD_FRAMES: dict[str, tuple[bytes, type[ProtocolError]]] = {
    "malformed": (prefixed(b"\xc1"), MalformedMessage),
    "truncated-body": (prefixed(encode(EXAMPLES[Hello])[:-1]), TruncatedMessage),
    "empty-body": (prefixed(b""), TruncatedMessage),
    "oversized": ((MAX_FRAME + 1).to_bytes(LENGTH_PREFIX, "big"), OversizedMessage),
    "unknown-type": (prefixed(pack({"v": 1, "t": "nope"})), UnknownMessageType),
    "version": (prefixed(pack({"v": 9, "t": "hello"})), VersionMismatch),
    "missing-field": (prefixed(pack({"v": 1, "t": "spawn"})), MalformedMessage),
}


@pytest.mark.parametrize(("bad", "error"), BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_poisoned_framebuffer_keeps_raising(bad: bytes, error: type[ProtocolError]) -> None:
    buffer = FrameBuffer()
    with pytest.raises(error) as first:
        buffer.feed(bad)
    assert first.value.code is CODES[error]
    for more in (frame(EXAMPLES[Hello]), b"", bad):
        with pytest.raises(error) as again:
            buffer.feed(more)
        assert again.value is first.value
    with pytest.raises(error) as at_close:
        buffer.close()
    assert at_close.value is first.value


@pytest.mark.parametrize(("bad", "error"), BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_messages_before_a_bad_frame_are_delivered(bad: bytes, error: type[ProtocolError]) -> None:
    good = [EXAMPLES[Hello], EXAMPLES[Spawn]]
    buffer = FrameBuffer()
    assert buffer.feed(b"".join(frame(m) for m in good) + bad + frame(EXAMPLES[Heartbeat])) == good
    with pytest.raises(error):
        buffer.feed(frame(EXAMPLES[Heartbeat]))
    with pytest.raises(error):
        buffer.close()
    # Same stream, a byte at a time: the same messages, then the same error.
    buffer = FrameBuffer()
    received: list[Message] = []
    stream = b"".join(frame(m) for m in good) + bad
    with pytest.raises(error):
        for i in range(len(stream)):
            received += buffer.feed(stream[i : i + 1])
    assert received == good


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    good=st.lists(any_message(), max_size=4),
    bad=st.sampled_from(sorted(BAD_FRAMES)),
    after=st.binary(max_size=16),
    data=st.data(),
)
def test_stream_errors_do_not_depend_on_read_boundaries(
    good: list[Message], bad: str, after: bytes, data: st.DataObject
) -> None:
    frame_bytes, error = BAD_FRAMES[bad]
    stream = b"".join(frame(m) for m in good) + frame_bytes + after
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    buffer = FrameBuffer()
    received: list[Message] = []
    start = 0
    with pytest.raises(error):
        for cut in [*cuts, len(stream)]:
            received += buffer.feed(stream[start:cut])
            start = cut
        buffer.close()
    assert [encode(m) for m in received] == [encode(m) for m in good]


# --- encoding an invalid message -----------------------------------------------------------------


@pytest.mark.parametrize(("cls", "name", "kind"), FIELDS, ids=[f"{c.TYPE}.{n}" for c, n, _ in FIELDS])
def test_encoding_a_wrong_field_kind_is_a_local_error(cls: type[Message], name: str, kind: str) -> None:
    extra = {"str": ["\ud800", "x" * (MAX_STR + 1), "\u00e9" * (MAX_STR // 2 + 1)]}
    for wrong in [*WRONG_VALUES[kind], *extra.get(kind, [])]:
        message = dataclasses.replace(EXAMPLES[cls], **{name: wrong})
        with pytest.raises(LocalProtocolError):
            encode(message)
        with pytest.raises(LocalProtocolError):
            frame(message)


def replace(cls: type[Message], **changes: Any) -> Message:
    return dataclasses.replace(EXAMPLES[cls], **changes)


LOCAL_ERRORS: dict[str, Message] = {
    "str-over-limit": replace(Spawn, path="p" * (MAX_STR + 1)),
    "str-over-limit-in-bytes": replace(Spawn, cwd="\U0001f600" * (MAX_STR // 4 + 1)),
    "lone-surrogate": replace(Spawn, bundle_name="a\udc80"),
    "bytes-over-limit": replace(Input, data=b"\x00" * (MAX_DATA + 1)),
    "bytearray-not-bytes": replace(Input, data=bytearray(b"x")),  # type: ignore[arg-type]
    "int-too-big": replace(Started, pid=2**64),
    "int-too-small": replace(Started, generation=-(2**63) - 1),
    "float-field-int-too-big": replace(Spawn, timeout=2**64),
    "map-str-over-limit": replace(Exited, stats={"a": "x" * (MAX_STR + 1)}),
    "map-key-over-limit": replace(Exited, stats={"k" * (MAX_STR + 1): 1}),
    "map-bytes-over-limit": replace(StatusReply, status={"b": [b"\x00" * (MAX_DATA + 1)]}),
    "map-int-too-big": replace(StatusReply, status={"n": {"m": 2**64}}),
    "map-surrogate-key": replace(StatusReply, status={"\ud800": 1}),
    "map-array-over-limit": replace(StatusReply, status={"a": [0] * (MAX_CONTAINER + 1)}),
    "map-map-over-limit": replace(StatusReply, status={str(i): 0 for i in range(MAX_CONTAINER + 1)}),
    "map-too-deep": replace(StatusReply, status=deep_map(MAX_DEPTH + 1)),
    "map-int-key": replace(StatusReply, status={1: 1}),
    "map-bytes-key": replace(StatusReply, status={b"k": 1}),
    "map-tuple": replace(StatusReply, status={"t": (1, 2)}),
    "map-set": replace(StatusReply, status={"s": {1}}),
    "map-object": replace(StatusReply, status={"o": object()}),
    "map-ext": replace(StatusReply, status={"e": msgpack.ExtType(1, b"")}),
    "map-timestamp": replace(StatusReply, status={"e": msgpack.Timestamp(0)}),
    "over-max-frame": replace(StatusReply, status={k: b"\x00" * MAX_DATA for k in "abcd"}),
}


@pytest.mark.parametrize("message", LOCAL_ERRORS.values(), ids=LOCAL_ERRORS.keys())
def test_encoding_an_invalid_message_is_a_local_error(message: Message) -> None:
    with pytest.raises(LocalProtocolError):
        encode(message)
    with pytest.raises(LocalProtocolError):
        frame(message)


def test_encoding_a_non_message_is_a_local_error() -> None:
    @dataclasses.dataclass(frozen=True)
    class Custom(Hello):
        pass

    for value in (Message(), Custom(**dataclasses.asdict(EXAMPLES[Hello])), object(), {"v": 1, "t": "heartbeat"}):
        with pytest.raises(LocalProtocolError):
            encode(value)  # type: ignore[arg-type]


# --- only protocol errors escape -----------------------------------------------------------------

msgpack_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(),
        st.text(max_size=10),
        st.binary(max_size=10),
        st.sampled_from(["v", "t", "id", "heartbeat", "hello", "spawn", "config", "status", 1, 2]),
        st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4)),
        st.builds(msgpack.Timestamp, st.integers(0, 2**34), st.integers(0, 999_999_999)),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(
                st.text(max_size=6),
                st.sampled_from(["v", "t", "id", "data"]),
                st.integers(-(2**63), 2**64 - 1),
                st.binary(max_size=3),
            ),
            children,
            max_size=5,
        ),
    ),
    max_leaves=20,
)


def decode_or_protocol_error(data: bytes) -> Message | ProtocolError:
    try:
        message = decode(data)
    except ProtocolError as exc:
        assert type(exc) in CODES
        assert exc.code is CODES[type(exc)]
        return exc
    assert type(message) in MESSAGE_TYPES
    assert decode(encode(message)) is not None
    return message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_decode_arbitrary_bytes_raises_only_protocol_errors(data: bytes) -> None:
    decode_or_protocol_error(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msgpack_values)
def test_decode_arbitrary_msgpack_raises_only_protocol_errors(value: Any) -> None:
    decode_or_protocol_error(pack(value))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=any_message(), data=st.data())
def test_decode_mutated_messages_raises_only_protocol_errors(message: Message, data: st.DataObject) -> None:
    body = bytearray(encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        position = data.draw(st.integers(0, max(len(body) - 1, 0)))
        if action == "flip" and body:
            body[position] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "set" and body:
            body[position] = data.draw(st.integers(0, 255))
        elif action == "insert":
            body[position:position] = data.draw(st.binary(min_size=1, max_size=4))
        elif body:
            del body[position]
    decode_or_protocol_error(bytes(body))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.binary(max_size=64), max_size=8), prefix_good=st.lists(any_message(), max_size=2))
def test_framebuffer_arbitrary_bytes_raises_only_protocol_errors(
    chunks: list[bytes], prefix_good: list[Message]
) -> None:
    buffer = FrameBuffer()
    chunks = [b"".join(frame(m) for m in prefix_good), *chunks]
    poison: ProtocolError | None = None
    for chunk in chunks:
        try:
            for message in buffer.feed(chunk):
                assert type(message) in MESSAGE_TYPES
        except ProtocolError as exc:
            assert type(exc) in CODES
            assert poison is None or exc is poison, "a poisoned buffer raises its first error"
            poison = exc
        else:
            assert poison is None, "a poisoned buffer accepted bytes"
    try:
        buffer.close()
    except ProtocolError as exc:
        assert type(exc) in CODES
        assert poison is None or exc is poison
    else:
        assert poison is None
