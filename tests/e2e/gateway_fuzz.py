"""What the gateway fuzz test sends: Hypothesis strategies for hostile frames, and the saved corpus.

A fuzz *step* is what one client does at once: a multipart message of raw frames (random bytes,
mutated encodings, msgpack maps of any shape, well-formed messages with hostile values), or a
``spawn`` of a real file under the roots, which forks a worker whose first frames are fuzzed too.
Spawns of real files are never mutated, so every worker the fuzz starts is tracked and killed.

The corpus (``tests/fuzz_corpus/gateway/*.msgpack``) holds one multipart message per file, as a msgpack
array of ``bin`` frames, for replay on every test run: ``python tests/e2e/gateway_fuzz.py`` writes it from
:data:`CASES`, named, hand-picked messages a hostile client can send, including the ones that found
bugs (``spawn-nul-path`` made the path check raise after the request was accepted, so the request was
then dispatched unchecked; ``spawn-long-path`` and ``hello-huge-versions`` made error texts the encoder
refused, so the reply was lost). A case found by the Hypothesis test belongs there too (add it to
:data:`CASES` and re-run the script).
"""

from __future__ import annotations

import math
import string
from pathlib import Path
from typing import Any

import msgpack
from hypothesis import strategies as st

from protocol import (
    Credit,
    Drain,
    Exited,
    Heartbeat,
    Hello,
    Input,
    Message,
    Output,
    Ready,
    Signal,
    Spawn,
    Started,
    StatusRequest,
    WorkerReport,
    encode,
)

CORPUS_DIR = Path(__file__).resolve().parent.parent / "fuzz_corpus" / "gateway"
ID_ALPHABET = string.ascii_letters + string.digits + "._:-"

ids = st.text(ID_ALPHABET, min_size=1, max_size=12)
signums = st.one_of(st.sampled_from([0, -1, 9, 15, 19, 64, 65, 2**31, -(2**63)]), st.integers(-(2**63), 2**64 - 1))
floats = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0, 1e-300, 1e300]), st.floats())
texts = st.text(max_size=40)


def refused_paths(root: Path) -> st.SearchStrategy[str]:
    """Paths the zygote must refuse (none of them is a file under ``root``)."""
    return st.one_of(
        st.sampled_from(
            [
                "",
                "relative.py",
                "/",
                str(root),
                str(root / "missing.py"),
                str(root / ".." / ".." / "etc" / "hostname"),
                f"{root}/\0.py",
                "/etc/hostname",
                "/proc/self/environ",
                "/" + "a" * 4000,
                str(root / "x.zip" / "y.py"),
            ]
        ),
        texts.map(lambda text: f"/{text}"),
    )


def hostile_messages(root: Path) -> st.SearchStrategy[Message]:
    """Well-formed messages with hostile values (never a spawn of a real file, never a reload)."""
    return st.one_of(
        st.builds(
            Spawn,
            id=ids,
            path=refused_paths(root),
            bundle_path=texts,
            bundle_name=texts,
            timeout=floats,
            cwd=texts,
        ),
        st.builds(Input, id=ids, data=st.binary(max_size=64)),
        st.builds(Credit, id=ids, size=st.integers(-(2**63), 2**64 - 1)),
        st.builds(Signal, id=ids, signum=signums),
        st.builds(StatusRequest, id=ids),
        st.just(Heartbeat()),
        st.builds(
            Hello,
            client=texts,
            role=st.sampled_from(["client", "control", "", "admin"]),
            protocol=st.integers(-2, 3),
            airflow=texts,
            python=texts,
            config=st.dictionaries(texts, texts, max_size=3),
        ),
        # Types the gateway must never accept from a client.
        st.builds(Exited, id=ids, exit_code=st.integers(-100, 300), outcome=texts, stats=st.just({})),
        st.builds(Started, id=ids, pid=st.integers(0, 2**31), generation=st.integers(0, 9), fork_ms=floats),
        st.builds(Output, id=ids, channel=st.sampled_from(["stdout", "requests", "x"]), data=st.binary(max_size=16)),
        st.builds(
            Ready,
            generation=st.integers(0, 9),
            pid=st.integers(0, 9),
            airflow=texts,
            python=texts,
            frozen=st.integers(0, 9),
        ),
        st.builds(Drain, deadline_s=floats),
        st.builds(WorkerReport, modules=st.just({}), gc=st.just({}), memory=st.just({})),
    )


def _mutate(data: bytes, draw: Any) -> bytes:
    if not data:
        return data
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "duplicate", "splice"]))
    where = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        return data[:where] + bytes([data[where] ^ draw(st.integers(1, 255))]) + data[where + 1 :]
    if kind == "truncate":
        return data[:where]
    if kind == "insert":
        return data[:where] + draw(st.binary(min_size=1, max_size=8)) + data[where:]
    if kind == "duplicate":
        return data + data
    return data[:where] + draw(st.binary(max_size=8)) + data[where + draw(st.integers(0, 8)) :]


@st.composite
def mutated(draw: Any, messages: st.SearchStrategy[Message]) -> bytes:
    return _mutate(encode(draw(messages)), draw)


plain = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), texts, st.binary(max_size=16)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
maps = st.dictionaries(
    st.sampled_from(["v", "t", "id", "path", "signum", "size", "data", "x"]) | texts,
    plain | st.sampled_from([1, 2, "spawn", "signal", "credit", "input", "hello"]),
    max_size=8,
).map(lambda body: bytes(msgpack.packb(body, use_bin_type=True)))


def frames(root: Path) -> st.SearchStrategy[bytes]:
    messages = hostile_messages(root)
    return st.one_of(st.binary(max_size=200), mutated(messages), maps, messages.map(encode))


def raw_steps(root: Path) -> st.SearchStrategy[tuple[str, list[bytes]]]:
    """A multipart message: one frame mostly, sometimes none of the expected shape."""
    return st.lists(frames(root), min_size=1, max_size=3).map(lambda parts: ("raw", parts))


def worker_steps() -> st.SearchStrategy[tuple[str, list[bytes]]]:
    """A real worker and the frames its ``requests`` channel gets (hostile first frames included)."""
    first = st.one_of(
        st.binary(max_size=64),
        st.integers(0, 2**32 - 1).map(lambda n: n.to_bytes(4, "big")),
        maps.map(lambda body: len(body).to_bytes(4, "big") + body),
    )
    return st.lists(first, max_size=3).map(lambda chunks: ("worker", chunks))


def steps(root: Path) -> st.SearchStrategy[tuple[str, list[bytes]]]:
    return st.one_of(raw_steps(root), raw_steps(root), raw_steps(root), worker_steps())


def read_case(path: Path) -> list[bytes]:
    parts = msgpack.unpackb(path.read_bytes(), raw=True)
    assert isinstance(parts, list) and all(isinstance(part, bytes) for part in parts), path
    return parts


def write_case(name: str, parts: list[bytes]) -> Path:
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    path = CORPUS_DIR / f"{name}.msgpack"
    path.write_bytes(msgpack.packb(parts, use_bin_type=True))
    return path


def pack(body: Any) -> bytes:
    return bytes(msgpack.packb(body, use_bin_type=True))


def spawn(path: str, request_id: str = "fz", timeout: float = 60.0) -> bytes:
    return encode(Spawn(id=request_id, path=path, bundle_path="/", bundle_name="b", timeout=timeout, cwd="/"))


def nested(levels: int) -> bytes:
    """``{v: 1, t: heartbeat, x: [[[...0...]]]}`` written by hand (msgpack's packer stops at 512)."""
    return b"\x83\xa1v\x01\xa1t\xa9heartbeat\xa1x" + b"\x91" * levels + b"\x00"


def _spawn_fields() -> dict[str, Any]:
    return {
        "v": 1,
        "t": "spawn",
        "id": "fz",
        "path": "/x",
        "bundle_path": "/",
        "bundle_name": "b",
        "timeout": 1.0,
        "cwd": "/",
    }


CASES: dict[str, list[bytes]] = {
    "empty-frame": [b""],
    "two-heartbeats": [encode(Heartbeat()), encode(Heartbeat())],
    "empty-then-heartbeat": [b"", encode(Heartbeat())],
    "never-used-byte": [b"\xc1"],
    "nil": [pack(None)],
    "array": [pack([1, "heartbeat"])],
    "integer": [pack(1)],
    "no-version": [pack({"t": "heartbeat"})],
    "version-2": [pack({"v": 2, "t": "heartbeat"})],
    "version-string": [pack({"v": "1", "t": "heartbeat"})],
    "version-bool": [pack({"v": True, "t": "heartbeat"})],
    "no-type": [pack({"v": 1})],
    "type-int": [pack({"v": 1, "t": 7})],
    "type-unknown": [pack({"v": 1, "t": "launch"})],
    "extra-key": [pack({"v": 1, "t": "heartbeat", "x": 1})],
    "int-key": [b"\x83\xa1v\x01\xa1t\xa9heartbeat\x01\x02"],
    "nested-1025": [nested(1025)],
    "timestamp-ext": [b"\x83\xa1v\x01\xa1t\xa9heartbeat\xa1x\xd6\xff\x00\x00\x00\x00"],
    "trailing-bytes": [encode(Heartbeat()) + b"\x00"],
    "truncated-spawn": [spawn("/etc/hostname")[:-5]],
    "str-over-16k": [pack({"v": 1, "t": "status", "id": "x" * (16 * 1024 + 1)})],
    "spawn-nul-path": [spawn("/etc/\0hostname")],
    "spawn-nan-timeout-outside": [spawn("/etc/hostname", timeout=math.nan)],
    "spawn-inf-timeout-outside": [spawn("/etc/hostname", timeout=math.inf)],
    "spawn-relative": [spawn("dags/x.py")],
    "spawn-empty-path": [spawn("")],
    "spawn-proc-environ": [spawn("/proc/self/environ")],
    "spawn-dot-dot": [spawn("/tmp/../etc/hostname")],
    "spawn-long-path": [spawn("/" + "a" * (16 * 1024 - 2))],
    "spawn-bad-id": [pack({**_spawn_fields(), "id": "no spaces"})],
    "spawn-long-id": [pack({**_spawn_fields(), "id": "x" * 65})],
    "spawn-timeout-string": [pack({**_spawn_fields(), "timeout": "60"})],
    "spawn-missing-cwd": [pack({k: v for k, v in _spawn_fields().items() if k != "cwd"})],
    "signal-zero-unknown": [encode(Signal(id="ghost", signum=0))],
    "signal-huge-unknown": [encode(Signal(id="ghost", signum=2**63))],
    "credit-negative-unknown": [encode(Credit(id="ghost", size=-1))],
    "credit-huge-unknown": [encode(Credit(id="ghost", size=2**64 - 1))],
    "input-unknown-64k": [encode(Input(id="ghost", data=b"\x00" * (64 * 1024)))],
    "client-sends-exited": [encode(Exited(id="x", exit_code=0, outcome="exited", stats={}))],
    "client-sends-started": [encode(Started(id="x", pid=1, generation=1, fork_ms=0.0))],
    "client-sends-output": [encode(Output(id="x", channel="stdout", data=b"x"))],
    "client-sends-ready": [encode(Ready(generation=9, pid=1, airflow="x", python="x", frozen=0))],
    "client-sends-drain": [encode(Drain(deadline_s=0.0))],
    "client-sends-worker-report": [encode(WorkerReport(modules={}, gc={}, memory={}))],
    "hello-protocol-2": [encode(Hello(client="fz", role="client", protocol=2, airflow="3.3.2", python="3.11.7"))],
    "hello-role-admin": [encode(Hello(client="fz", role="admin", protocol=1, airflow="x", python="x"))],
    "hello-old-airflow": [encode(Hello(client="fz", role="client", protocol=1, airflow="1.10.15", python="2.7"))],
    # An error quoting client input past the 16 KiB str limit was refused by the encoder: the one
    # terminal reply was lost (spawn) or the refusal never sent (hello).
    "hello-huge-versions": [
        encode(Hello(client="fz", role="client", protocol=1, airflow="a" * 16000, python="p" * 16000))
    ],
    "status-then-garbage": [encode(StatusRequest(id="s")), b"\xff\xff"],
}


def main() -> None:
    for old in CORPUS_DIR.glob("*.msgpack"):
        old.unlink()
    for name, parts in CASES.items():
        write_case(name, parts)
    print(f"wrote {len(list(CORPUS_DIR.glob('*.msgpack')))} cases to {CORPUS_DIR}")


if __name__ == "__main__":
    main()
