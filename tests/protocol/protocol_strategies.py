"""Hypothesis strategies and fixed examples for every message of the wire protocol.

Shared by the protocol tests, the fuzz-corpus generator and the atheris harness (imported as a
top-level module: pytest's default import mode puts this directory on ``sys.path``, and so does
running a script from it). Strategies are derived from the dataclass fields' annotation strings, so a
new message type is covered as soon as its field kinds are known here; a new field kind fails
``test_every_field_kind_has_a_strategy``.
"""

from __future__ import annotations

import dataclasses
import math
import string
from typing import Any

import msgpack
from hypothesis import strategies as st

from protocol.limits import MAX_CONTAINER, MAX_DATA, MAX_DEPTH, MAX_ID, MAX_STR, PROTOCOL_VERSION
from protocol.messages import (
    MESSAGE_TYPES,
    Ack,
    Credit,
    Drain,
    Error,
    Exited,
    Heartbeat,
    Hello,
    Input,
    Message,
    Output,
    ProbeReport,
    Ready,
    Reload,
    Signal,
    Spawn,
    Started,
    StatusReply,
    StatusRequest,
    Welcome,
    WorkerReport,
)

ID_ALPHABET = string.ascii_letters + string.digits + "._:-"
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
MAP_KIND = "dict[str, Any]"

# --- scalars -------------------------------------------------------------------------------------

_texts = st.text(max_size=24)
_boundary_texts = st.sampled_from(["", "x" * MAX_STR, "\u00e9" * (MAX_STR // 2), "\U0001f600" * (MAX_STR // 4)])
_ints = st.integers(min_value=INT_MIN, max_value=INT_MAX)
_boundary_ints = st.sampled_from([0, -1, 1, INT_MIN, INT_MAX, 2**63 - 1, 2**63, 2**32, -(2**31) - 1])
_floats = st.floats(allow_nan=True, allow_infinity=True)
_blobs = st.binary(max_size=48)
_boundary_blobs = st.sampled_from([b"", b"\x00" * 256, b"\xff" * MAX_DATA])


def plain_values(depth: int) -> st.SearchStrategy[Any]:
    """Values allowed inside a ``map`` field with ``depth`` more levels of arrays/maps available."""
    scalars: st.SearchStrategy[Any] = st.one_of(st.none(), st.booleans(), _ints, _floats, _texts, _blobs)
    if depth <= 0:
        return scalars
    children = st.deferred(lambda: plain_values(depth - 1))
    return st.one_of(
        scalars,
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=8), children, max_size=3),
    )


def plain_maps(small: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """A ``map`` field: the field's own map is nesting level 1 of :data:`MAX_DEPTH`."""
    values = plain_values(MAX_DEPTH - 1)
    maps = st.dictionaries(st.text(max_size=12), values, max_size=4)
    if small:
        return maps
    return st.one_of(maps, st.just(deep_map(MAX_DEPTH)), st.just({"n": [None] * MAX_CONTAINER}))


def deep_map(levels: int) -> dict[str, Any]:
    """A map nested ``levels`` deep, counting itself (alternating maps and arrays)."""
    value: Any = 1
    for level in range(levels - 1):
        value = [value] if level % 2 == 0 else {"k": value}
    return {"top": value}


def nested_maps(levels: int) -> dict[str, Any]:
    """Maps only, ``levels`` deep."""
    value: Any = 1
    for _ in range(levels):
        value = {"k": value}
    return value  # type: ignore[no-any-return]


def nested_arrays(levels: int) -> dict[str, Any]:
    """A map holding arrays only, ``levels`` deep counting the map."""
    value: Any = None
    for _ in range(levels - 1):
        value = [value]
    return {"a": value}


def kind_strategies(small: bool = True) -> dict[str, st.SearchStrategy[Any]]:
    """One strategy per field kind of SPEC.md section 2, keyed by the annotation string.

    ``small`` leaves out the boundary sizes (16 KiB strings, 1 MiB blobs, 65,536-entry arrays),
    for tests that feed frames a byte at a time.
    """
    ids = st.text(alphabet=ID_ALPHABET, min_size=1, max_size=MAX_ID)
    if small:
        return {
            "str": _texts,
            "RequestId": ids,
            "int": _ints,
            "float": _floats,
            "bool": st.booleans(),
            "bytes": _blobs,
            MAP_KIND: plain_maps(small=True),
        }
    return {
        "str": st.one_of(_texts, _boundary_texts),
        "RequestId": st.one_of(ids, st.sampled_from(["a", "x" * MAX_ID, ID_ALPHABET[:MAX_ID]])),
        "int": st.one_of(_ints, _boundary_ints),
        "float": st.one_of(_floats, st.sampled_from([0.0, -0.0, math.inf, -math.inf, 5e-324, 1.7e308])),
        "bool": st.booleans(),
        "bytes": st.one_of(_blobs, _boundary_blobs),
        MAP_KIND: plain_maps(small=False),
    }


SMALL_KINDS = kind_strategies(small=True)
ALL_KINDS = kind_strategies(small=False)


def field_kinds(cls: type[Message]) -> list[tuple[str, str, bool]]:
    """``(name, kind, optional)`` for each field of ``cls``."""
    return [
        (
            f.name,
            str(f.type),
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    ]


def message_strategy(cls: type[Message], small: bool = True) -> st.SearchStrategy[Message]:
    """Valid instances of ``cls``; optional fields are sometimes left at their default."""
    kinds = SMALL_KINDS if small else ALL_KINDS

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        values: dict[str, Any] = {}
        for name, kind, optional in field_kinds(cls):
            if optional and draw(st.booleans()):
                continue
            values[name] = draw(kinds[kind])
        return cls(**values)

    return build()


MESSAGE_STRATEGIES: dict[type[Message], st.SearchStrategy[Message]] = {
    cls: message_strategy(cls) for cls in MESSAGE_TYPES
}
LARGE_MESSAGE_STRATEGIES: dict[type[Message], st.SearchStrategy[Message]] = {
    cls: message_strategy(cls, small=False) for cls in MESSAGE_TYPES
}


def any_message(small: bool = True) -> st.SearchStrategy[Message]:
    table = MESSAGE_STRATEGIES if small else LARGE_MESSAGE_STRATEGIES
    return st.one_of(*(table[cls] for cls in MESSAGE_TYPES))


# --- fixed examples ------------------------------------------------------------------------------

EXAMPLES: dict[type[Message], Message] = {
    Hello: Hello(
        client="dag-processor-1",
        role="client",
        protocol=PROTOCOL_VERSION,
        airflow="3.3.0",
        python="3.11.7",
        config={"core.dags_folder": "abc123"},
    ),
    Welcome: Welcome(
        server="zygote",
        protocol=PROTOCOL_VERSION,
        airflow="3.3.0",
        python="3.11.7",
        gateway_pid=4242,
        heartbeat_interval=5.0,
        credit_window=1 << 20,
    ),
    Heartbeat: Heartbeat(),
    Error: Error(id="", code="hello_required", message="send hello first"),
    Spawn: Spawn(
        id="req-1",
        path="/dags/example.py",
        bundle_path="/dags",
        bundle_name="dags-folder",
        timeout=50.0,
        cwd="/tmp",
    ),
    Started: Started(id="req-1", pid=31337, generation=2, fork_ms=1.25),
    Input: Input(id="req-1", data=b'{"type": "GetConnection"}\n'),
    Output: Output(id="req-1", channel="stdout", data=b"hello\n"),
    Credit: Credit(id="req-1", size=4096),
    Signal: Signal(id="req-1", signum=15),
    Exited: Exited(id="req-1", exit_code=-9, outcome="killed", stats={"wall_s": 0.5, "peak_uss": 123456}),
    StatusRequest: StatusRequest(id="st:1"),
    StatusReply: StatusReply(id="st:1", status={"workers": [{"pid": 1, "id": "req-1"}], "queued": 0}),
    Reload: Reload(id="rl.1"),
    Ack: Ack(id="rl.1", detail="generation 3 serving"),
    Ready: Ready(generation=3, pid=100, airflow="3.3.0", python="3.11.7", frozen=123456),
    Drain: Drain(deadline_s=30.0),
    WorkerReport: WorkerReport(
        modules={"pandas": 0.8}, gc={"gen2_s": 0.01}, memory={"uss": 1 << 24}, ending={"exit_code": 0}
    ),
    ProbeReport: ProbeReport(module="numpy", ok=True, reason="", import_s=0.12, memory_delta=-4096),
}


# --- wrong values per kind -----------------------------------------------------------------------

WRONG_VALUES: dict[str, list[Any]] = {
    "str": [1, 1.5, True, None, b"bytes", ["x"], {"k": "v"}],
    "RequestId": [
        "",
        "x" * (MAX_ID + 1),
        "a b",
        "a/b",
        "caf\u00e9",
        "a\n",
        "\x00",
        "id\u0660",
        1,
        None,
        b"req-1",
        ["req-1"],
    ],
    "int": [True, False, 1.0, 1.5, "1", None, b"\x01", [1], {"i": 1}],
    "float": [True, False, "1.0", None, b"1", [1.0], {"f": 1.0}],
    "bool": [0, 1, 0.0, "true", None, b"\x01", [True]],
    "bytes": ["text", 1, None, True, [1, 2], {"b": b""}],
    MAP_KIND: [
        [],
        ["k", "v"],
        "map",
        1,
        None,
        True,
        b"map",
        deep_map(MAX_DEPTH + 1),
        {"k": deep_map(MAX_DEPTH)},
        nested_maps(MAX_DEPTH + 1),
        nested_arrays(MAX_DEPTH + 1),
    ],
}


def body_of(message: Message) -> dict[str, Any]:
    """The wire map of ``message`` (``v``, ``t`` and its fields), built independently of the codec."""
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "t": type(message).TYPE}
    for f in dataclasses.fields(message):
        body[f.name] = getattr(message, f.name)
    return body


def pack(obj: Any) -> bytes:
    """msgpack with ``bin`` for bytes, as the spec requires of encoders; no key checks."""
    packed: bytes = msgpack.packb(obj, use_bin_type=True, strict_types=False)
    return packed
