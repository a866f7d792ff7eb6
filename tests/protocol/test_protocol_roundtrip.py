"""Round-trips of every message type through encode/decode and frame/FrameBuffer."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_corpus import same
from protocol_strategies import (
    ALL_KINDS,
    EXAMPLES,
    LARGE_MESSAGE_STRATEGIES,
    MAP_KIND,
    MESSAGE_STRATEGIES,
    SMALL_KINDS,
    WRONG_VALUES,
    any_message,
    body_of,
    deep_map,
    field_kinds,
    pack,
)

from protocol import codec
from protocol.codec import FrameBuffer, decode, encode, frame
from protocol.limits import LENGTH_PREFIX, MAX_CONTAINER, MAX_DATA, MAX_DEPTH, MAX_FRAME, MAX_ID, MAX_STR
from protocol.messages import MESSAGE_TYPES, Exited, Hello, Message, Spawn, StatusReply

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LARGE = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "RequestId": str,
    "int": int,
    "float": float,
    "bool": bool,
    "bytes": bytes,
    MAP_KIND: dict,
}


def has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, dict):
        return any(has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(has_nan(v) for v in value)
    return False


def check_roundtrip(message: Message) -> Message:
    body = encode(message)
    decoded = decode(body)
    assert type(decoded) is type(message)
    assert same(decoded, message)
    if not any(has_nan(getattr(message, f.name)) for f in dataclasses.fields(message)):
        assert decoded == message
    for name, kind, _optional in field_kinds(type(message)):
        value = getattr(decoded, name)
        assert isinstance(value, PYTHON_TYPES[kind]), (name, kind, value)
        if kind == "int":
            assert not isinstance(value, bool)
    return decoded


# --- coverage of the strategies ------------------------------------------------------------------


def test_every_message_type_has_a_strategy_and_an_example() -> None:
    assert set(MESSAGE_STRATEGIES) == set(MESSAGE_TYPES)
    assert set(LARGE_MESSAGE_STRATEGIES) == set(MESSAGE_TYPES)
    assert set(EXAMPLES) == set(MESSAGE_TYPES), "add an example for the new message type"
    assert len({cls.TYPE for cls in MESSAGE_TYPES}) == len(MESSAGE_TYPES), "duplicate wire names"
    assert all(cls.TYPE for cls in MESSAGE_TYPES), "a message type without a wire name"


def test_every_field_kind_has_a_strategy() -> None:
    kinds = {kind for cls in MESSAGE_TYPES for _name, kind, _optional in field_kinds(cls)}
    assert kinds <= set(SMALL_KINDS), f"no strategy for field kinds {kinds - set(SMALL_KINDS)}"
    # The strategy table and the codec's validators name the same kinds.
    assert set(SMALL_KINDS) == set(ALL_KINDS) == set(codec._FIELD_CHECKS) == set(PYTHON_TYPES)
    assert set(WRONG_VALUES) == set(SMALL_KINDS)


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.TYPE)
def test_strategy_builds_its_type(cls: type[Message]) -> None:
    seen: list[Message] = []

    @settings(max_examples=5, deadline=None, database=None)
    @given(MESSAGE_STRATEGIES[cls])
    def collect(message: Message) -> None:
        seen.append(message)

    collect()
    assert seen
    assert all(type(m) is cls for m in seen)


# --- encode / decode -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.TYPE)
def test_example_roundtrips(cls: type[Message]) -> None:
    check_roundtrip(EXAMPLES[cls])


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.TYPE)
@FAST
@given(data=st.data())
def test_roundtrip_every_type(cls: type[Message], data: st.DataObject) -> None:
    check_roundtrip(data.draw(MESSAGE_STRATEGIES[cls]))


@LARGE
@given(any_message(small=False))
def test_roundtrip_boundary_sizes(message: Message) -> None:
    check_roundtrip(message)


@FAST
@given(any_message())
def test_wire_form(message: Message) -> None:
    """The body is the map {v, t, fields...}, with bin for bytes and str for text (SPEC.md 1)."""
    wire = msgpack.unpackb(encode(message), raw=False)  # raw=False: str -> str, bin -> bytes
    assert isinstance(wire, dict)
    assert wire["v"] == 1
    assert wire["t"] == type(message).TYPE
    assert set(wire) == {"v", "t"} | {f.name for f in dataclasses.fields(message)}
    for name, kind, _optional in field_kinds(type(message)):
        assert isinstance(wire[name], PYTHON_TYPES[kind]) or (kind == "float" and type(wire[name]) is int)
    if not any(has_nan(getattr(message, f.name)) for f in dataclasses.fields(message)):
        assert wire == body_of(message)


def test_bytes_travel_as_bin_and_text_as_str() -> None:
    body = encode(Exited(id="a", exit_code=0, outcome="exited", stats={"b": b"\x00", "s": "x"}))
    assert b"\xc4\x01\x00" in body  # bin8 of one byte
    assert b"\xa1x" in body  # fixstr "x"


WITH_FLOATS = [cls for cls in MESSAGE_TYPES if any(kind == "float" for _, kind, _ in field_kinds(cls))]


def test_some_types_have_float_fields() -> None:
    assert {cls.TYPE for cls in WITH_FLOATS} == {"welcome", "spawn", "started", "drain", "probe_report"}


@pytest.mark.parametrize("cls", WITH_FLOATS, ids=lambda cls: cls.TYPE)
def test_float_fields_accept_integers_on_the_wire(cls: type[Message]) -> None:
    floats = [name for name, kind, _ in field_kinds(cls) if kind == "float"]
    body = body_of(EXAMPLES[cls])
    for name in floats:
        body[name] = 7
    decoded = decode(pack(body))
    for name in floats:
        value = getattr(decoded, name)
        assert type(value) is float
        assert value == 7.0


@pytest.mark.parametrize(
    ("cls", "name"),
    [(cls, name) for cls in MESSAGE_TYPES for name, _kind, optional in field_kinds(cls) if optional],
)
def test_optional_fields_may_be_omitted(cls: type[Message], name: str) -> None:
    body = body_of(EXAMPLES[cls])
    del body[name]
    decoded = decode(pack(body))
    spec = next(f for f in dataclasses.fields(cls) if f.name == name)
    default = spec.default if spec.default_factory is dataclasses.MISSING else spec.default_factory()
    assert default is not dataclasses.MISSING
    assert getattr(decoded, name) == default


def test_optional_fields_per_spec() -> None:
    optional = {(cls.TYPE, name) for cls in MESSAGE_TYPES for name, _kind, opt in field_kinds(cls) if opt}
    assert optional == {
        ("hello", "config"),
        ("hello", "process"),
        ("welcome", "load"),
        ("heartbeat", "load"),
        ("spawn", "process"),
        ("exited", "stats"),
        ("exited", "note"),
        ("ready", "config"),
        ("probe_report", "kind"),
        ("worker_report", "ending"),
    }


@pytest.mark.parametrize("kind", sorted(SMALL_KINDS))
def test_wrong_values_are_rejected_by_the_kind_check(kind: str) -> None:
    check = codec._FIELD_CHECKS[kind]
    for value in WRONG_VALUES[kind]:
        assert not check(value), (kind, value)


def test_limits_at_their_boundary_roundtrip() -> None:
    check_roundtrip(Spawn(id="x" * MAX_ID, path="p" * MAX_STR, bundle_path="", bundle_name="", timeout=0.0, cwd=""))
    check_roundtrip(Spawn(id="a", path="\u00e9" * (MAX_STR // 2), bundle_path="", bundle_name="", timeout=1.5, cwd=""))
    check_roundtrip(StatusReply(id="a", status={"blob": b"\x01" * MAX_DATA}))
    check_roundtrip(StatusReply(id="a", status={"list": [0] * MAX_CONTAINER}))
    check_roundtrip(StatusReply(id="a", status={str(i): i for i in range(MAX_CONTAINER)}))
    check_roundtrip(StatusReply(id="a", status=deep_map(MAX_DEPTH)))
    check_roundtrip(Hello(client="c", role="control", protocol=2**64 - 1, airflow="", python="", config={}))
    check_roundtrip(Hello(client="c", role="control", protocol=-(2**63), airflow="", python=""))


def test_message_of_exactly_max_frame_roundtrips() -> None:
    status: dict[str, Any] = {key: b"\x00" * MAX_DATA for key in "abc"}
    status["d"] = b"\x00" * 1000  # bin16: a 3-byte header
    rest = len(pack(body_of(StatusReply(id="a", status=status)))) - (3 + 1000)
    status["d"] = b"\x00" * (MAX_FRAME - rest - 5)  # bin32: a 5-byte header
    body = encode(StatusReply(id="a", status=status))
    assert len(body) == MAX_FRAME
    assert decode(body) == StatusReply(id="a", status=status)
    buffer = FrameBuffer()
    stream = frame(StatusReply(id="a", status=status))
    assert buffer.feed(stream[:-1]) == []
    assert buffer.feed(stream[-1:]) == [StatusReply(id="a", status=status)]
    buffer.close()


# --- frame / FrameBuffer -------------------------------------------------------------------------


@FAST
@given(any_message())
def test_frame_is_length_prefixed_body(message: Message) -> None:
    body = encode(message)
    framed = frame(message)
    assert framed[:LENGTH_PREFIX] == len(body).to_bytes(LENGTH_PREFIX, "big")
    assert framed[LENGTH_PREFIX:] == body


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.TYPE)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_framebuffer_roundtrip_every_type(cls: type[Message], data: st.DataObject) -> None:
    message = data.draw(MESSAGE_STRATEGIES[cls])
    buffer = FrameBuffer()
    [decoded] = buffer.feed(frame(message))
    assert same(decoded, message)
    buffer.close()


@FAST
@given(messages=st.lists(any_message(), max_size=12), data=st.data())
def test_framebuffer_split_at_arbitrary_points(messages: list[Message], data: st.DataObject) -> None:
    stream = b"".join(frame(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    buffer = FrameBuffer()
    received: list[Message] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        received += buffer.feed(stream[start:cut])
        start = cut
    buffer.close()
    assert len(received) == len(messages)
    assert all(same(a, b) for a, b in zip(received, messages, strict=True))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_message(), min_size=1, max_size=5))
def test_framebuffer_byte_by_byte(messages: list[Message]) -> None:
    frames = [frame(m) for m in messages]
    buffer = FrameBuffer()
    received: list[Message] = []
    for framed, message in zip(frames, messages, strict=True):
        for i in range(len(framed)):
            got = buffer.feed(framed[i : i + 1])
            if i < len(framed) - 1:
                assert got == [], "a message completed before its last byte"
            else:
                assert len(got) == 1
                assert same(got[0], message)
                received += got
    buffer.close()
    assert len(received) == len(messages)


def test_framebuffer_many_messages_in_one_feed() -> None:
    messages = [EXAMPLES[cls] for cls in MESSAGE_TYPES] * 20
    buffer = FrameBuffer()
    assert buffer.feed(b"".join(frame(m) for m in messages)) == messages
    assert buffer.feed(b"") == []
    buffer.close()


def test_framebuffer_empty_feeds_and_close() -> None:
    buffer = FrameBuffer()
    assert buffer.feed(b"") == []
    buffer.close()
    buffer.close()


def test_framebuffer_keeps_partial_bytes_between_feeds() -> None:
    first, second = frame(EXAMPLES[Hello]), frame(EXAMPLES[Spawn])
    buffer = FrameBuffer()
    assert buffer.feed(first + second[:3]) == [EXAMPLES[Hello]]
    assert buffer.feed(second[3:10]) == []
    assert buffer.feed(second[10:]) == [EXAMPLES[Spawn]]
    buffer.close()
