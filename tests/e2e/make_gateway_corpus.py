"""Write the gateway's saved fuzz corpus: ``python tests/e2e/make_gateway_corpus.py``.

Named, hand-picked multipart messages a hostile client can send, including the ones that found bugs
(``spawn-nul-path`` made the path check raise after the request was accepted, so the request was then
dispatched unchecked; ``spawn-long-path`` and ``hello-huge-versions`` made error texts the encoder
refused, so the reply was lost). ``test_hostile_protocol.py`` replays every file on each test run; a case found
by the Hypothesis test belongs here too (add it below and re-run this script).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_fuzz import CORPUS_DIR, write_case

from protocol import (
    Credit,
    Drain,
    Exited,
    Heartbeat,
    Hello,
    Input,
    Output,
    Ready,
    Signal,
    Spawn,
    Started,
    StatusRequest,
    WorkerReport,
    encode,
)


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
