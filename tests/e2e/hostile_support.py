"""Shared helpers for the hostile-input tests: one zygote per module, and the checks after each scenario.

After every scenario a test calls :meth:`Hostile.assert_recovered`, which proves what the issue asks:
the zygote still serves (a *canary* parse of a normal DAG file succeeds), nothing is left behind (no
process carrying this zygote's environment marker but the gateway and its forker, no child of the
forker, no zombie) and no descriptor leaked (the gateway's and the forker's ``/proc/<pid>/fd`` counts
are back at most at the baseline taken before the scenario). Ledgers are checked on both client
kinds: a :class:`~zygote.client.ledger.Ledger` (``ZygoteConnection``) or a :class:`RawLedger`
(a :class:`~zygote_harness.RawClient`), where every sent request id must get exactly one terminal.
Nothing here sleeps to synchronise: every wait polls a condition up to a deadline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import psutil
from dagfiles import simple_dag, write
from zygote_harness import RawClient, ZygoteProcess, socket_endpoint, spawn_message

from protocol import (
    CHANNELS,
    Credit,
    Error,
    Exited,
    Heartbeat,
    Input,
    Message,
    Output,
    Started,
    StatusReply,
    StatusRequest,
    decode,
)

MARK_VARIABLE = "ZYGOTE_HOSTILE_MARK"
FDS_PER_POOLED_WORKER = len(CHANNELS) + 1
"""The parent ends the forker holds for an idle pool worker: one per relayed channel, plus its report."""
NOT_TERMINAL = frozenset({"duplicate_id", "unknown_id", "malformed", "truncated", "unknown_type"})
"""Error codes that never end a request (SPEC section 6), except the oversized-input case."""


def eventually(problem: Callable[[], str], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``problem`` (a description of what is still wrong, "" when fine) until it is fine."""
    deadline = time.monotonic() + timeout
    last = problem()
    while last and time.monotonic() < deadline:
        time.sleep(interval)
        last = problem()
    if last:
        raise AssertionError(f"after {timeout} s, {what}: {last}")


class HostileClient(RawClient):
    """A :class:`RawClient` that keeps its session alive (a heartbeat after a second of silence)."""

    def __init__(self, endpoint: str, name: str = "hostile") -> None:
        super().__init__(endpoint, name)
        self.last_sent = time.monotonic()

    def send(self, message: Any) -> None:
        super().send(message)
        self.last_sent = time.monotonic()

    def send_raw(self, *frames: bytes) -> None:
        super().send_raw(*frames)
        self.last_sent = time.monotonic()

    def poll_message(self, timeout: float) -> Message | None:
        """The next message within ``timeout``, or None; heartbeats go out meanwhile."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            if time.monotonic() - self.last_sent >= 1.0:
                self.send(Heartbeat())
            if self.socket.poll(int(min(remaining, 0.5) * 1000) + 1):
                message: Message = decode(self.socket.recv())
                return message
        return None

    def recv(self, timeout: float = 10.0) -> Any:
        message = self.poll_message(timeout)
        if message is None:
            raise AssertionError(f"no message from the zygote within {timeout} s")
        return message


# --- one zygote per module ------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    gateway_fds: int
    forker_pid: int
    forker_fds: int
    pooled: int


@dataclass
class Hostile:
    """A running zygote shared by the scenarios of one test module."""

    zygote: ZygoteProcess
    dags: Path
    mark: str
    canary_path: Path
    canaries: int = 0

    @property
    def endpoint(self) -> str:
        return str(self.zygote.settings.socket)

    @property
    def gateway_pid(self) -> int:
        return self.zygote.popen.pid

    def forker_pids(self) -> list[int]:
        """Live forkers: the gateway's children running ``zygote.forker.main``."""
        try:
            children = psutil.Process(self.gateway_pid).children()
        except psutil.NoSuchProcess:
            return []
        return [c.pid for c in children if _is_forker(c)]

    def forker_pid(self, timeout: float = 30.0) -> int:
        """The one serving forker (waits through a restart)."""
        found: list[int] = []

        def one() -> str:
            found[:] = self.forker_pids()
            if len(found) == 1:
                return ""
            alive = self.zygote.popen.poll() is None
            return f"forkers {found}, gateway alive: {alive}, log tail:\n{self.zygote.log_text()[-2000:]}"

        eventually(one, timeout, "exactly one forker")
        return found[0]

    def baseline(self) -> Baseline:
        """Descriptor counts taken with the warm pool full and nothing evicted left to reap, so the
        pool's own socket ends are counted once, whatever refill was under way."""
        forker = self.forker_pid()
        eventually(self._pool_unsettled, 60, "a full, settled warm pool")
        return Baseline(fd_count(self.gateway_pid), forker, fd_count(forker), self.pool().get("idle", 0))

    def leftovers(self) -> str:
        """Processes of this zygote that should not exist: strays, orphans, zombies, worker children."""
        forkers = self.forker_pids()
        marked = marked_pids(self.mark)
        children = [pid for forker in forkers for pid in _children(forker)]
        pool = self.pool_pids()  # after the listings: a worker refilled since is listed here too
        expected = {self.gateway_pid, *forkers, *pool}
        problems = [f"{pid} {_describe(pid)}" for pid in marked if pid not in expected or _is_zombie(pid)]
        problems += [f"forker child {pid} {_describe(pid)}" for pid in children if pid not in pool]
        return "; ".join(problems)

    def pool(self) -> dict[str, Any]:
        """The forker's ``pool`` status (ADR 0006); empty while no forker answers."""
        from zygote.client.control import ControlError

        try:
            return dict(self.zygote.status()["forker"]["pool"])
        except (ControlError, KeyError, TypeError):
            return {}

    def pool_pids(self) -> set[int]:
        """The warm pool's processes (idle, or evicted and not yet reaped): the forker's children on purpose."""
        return set(self.pool().get("pids", ()))

    def _pool_unsettled(self) -> str:
        pool = self.pool()
        if not pool or pool["idle"] == pool["size"] == len(pool["pids"]):
            return ""
        return f"pool {pool['idle']}/{pool['size']} idle, {len(pool['pids'])} processes"

    def fd_growth(self, base: Baseline) -> str:
        problems = []
        gateway = fd_count(self.gateway_pid)
        if gateway > base.gateway_fds:
            problems.append(f"gateway has {gateway} fds, had {base.gateway_fds}")
        forkers = self.forker_pids()
        # An idle pool worker's socket ends stay in the forker until a request takes it (ADR 0006);
        # an evicted one's are closed at eviction, so only idle workers count.
        pool_fds = (self.pool().get("idle", 0) - base.pooled) * FDS_PER_POOLED_WORKER
        if forkers == [base.forker_pid] and (forker := fd_count(base.forker_pid)) > base.forker_fds + pool_fds:
            problems.append(f"forker has {forker} fds, had {base.forker_fds} (pool's share now {pool_fds:+d})")
        return "; ".join(problems)

    def canary(self, timeout: float = 60.0) -> RawParse:
        """A normal DAG file parse through the zygote; it must succeed."""
        self.canaries += 1
        client = HostileClient(self.endpoint, "canary")
        try:
            client.hello()
            parse = run_raw_parse(client, f"canary-{self.canaries}", self.canary_path, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nzygote log tail:\n{self.zygote.log_text()[-4000:]}") from exc
        finally:
            client.close()
        assert isinstance(parse.terminal, Exited) and parse.terminal.exit_code == 0, parse.describe()
        assert self.canary_dag_id.encode() in parse.outputs.get("requests", b""), parse.describe()
        return parse

    @property
    def canary_dag_id(self) -> str:
        return f"canary_{self.dags.name.replace('-', '_')}"

    def assert_recovered(self, base: Baseline | None, ledger: Any = None, timeout: float = 30.0) -> None:
        """Canary parse succeeds; no leftover process; no fd growth; the ledger balances."""
        if self.zygote.popen.poll() is not None:
            raise AssertionError(f"the zygote exited:\n{self.zygote.log_text()[-3000:]}")
        self.canary()
        eventually(self.leftovers, timeout, "leftover processes")
        if base is not None:
            eventually(lambda: self.fd_growth(base), timeout, "descriptors leaked")
        if ledger is not None:
            assert_ledger_balanced(ledger)
        assert not self.zygote.events("gateway.internal_error"), self.zygote.events("gateway.internal_error")


@contextlib.contextmanager
def hostile_zygote(log_dir: Path, name: str, **extra_env: str) -> Iterator[Hostile]:
    """Start a zygote (this process's Airflow config, a private socket) for a module's scenarios."""
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / f"hostile-{name}"
    shutil.rmtree(dags, ignore_errors=True)
    dags.mkdir(parents=True)
    mark = uuid.uuid4().hex
    env = {**os.environ, "AIRFLOW__ZYGOTE__SOCKET": socket_endpoint(), MARK_VARIABLE: mark}
    canary = write(dags, "canary.py", simple_dag(f"canary_hostile_{name.replace('-', '_')}"))
    zygote = ZygoteProcess.start(env, log_dir / f"zygote-{name}.log", {k: str(v) for k, v in extra_env.items()})
    hostile = Hostile(zygote, dags, mark, canary)
    try:
        hostile.canary()  # warms lazy preloads, so the baselines taken later are stable
        yield hostile
    finally:
        zygote.stop()
        hostile.zygote.stop()  # a test may have replaced it (a restarted zygote)


def _is_forker(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE and "zygote.forker.main" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def _is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _children(pid: int) -> list[int]:
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _describe(pid: int) -> str:
    try:
        process = psutil.Process(pid)
        return f"({process.status()}: {' '.join(process.cmdline())[:120]})"
    except psutil.Error:
        return "(gone)"


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def marked_pids(mark: str) -> list[int]:
    """Every process whose environment carries ``mark`` (the zygote's processes and what they started)."""
    needle = f"{MARK_VARIABLE}={mark}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                if needle in handle.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


# --- ledgers --------------------------------------------------------------------------------------


def assert_ledger_balanced(ledger: Any, requests: int | None = None) -> None:
    """Every request the client opened ended in exactly one recorded outcome."""
    assert not ledger.open_ids, f"requests without an outcome: {ledger.open_ids}"
    ids = [entry.request_id for entry in ledger.entries]
    assert len(ids) == len(set(ids)), f"a request has two outcomes: {Counter(ids).most_common(3)}"
    assert all(entry.outcome for entry in ledger.entries)
    if requests is not None:
        assert len(ids) == requests, f"{len(ids)} outcomes for {requests} requests: {ledger.counts()}"


@dataclass
class RawLedger:
    """Terminal replies per request id as a :class:`RawClient` sees them (SPEC section 5)."""

    client: HostileClient
    sent: set[str] = field(default_factory=set)
    terminals: Counter[str] = field(default_factory=Counter)
    errors: list[Error] = field(default_factory=list)
    started: dict[str, Started] = field(default_factory=dict)
    output_bytes: Counter[str] = field(default_factory=Counter)
    exits: dict[str, Exited] = field(default_factory=dict)
    credit: bool = True
    barriers: int = 0
    raw_spawns: Counter[str] = field(default_factory=Counter)
    """Spawns sent as raw frames, per id: an id sent again after its first ended is a new request."""

    def spawn(self, request_id: str, path: Path, timeout: float = 60.0) -> None:
        self.client.send(spawn_message(request_id, path, timeout))
        self.sent.add(request_id)

    def record(self, message: Message) -> Message:
        if isinstance(message, Exited):
            self.terminals[message.id] += 1
            self.exits[message.id] = message
        elif isinstance(message, Error):
            self.errors.append(message)
            if message.id and message.code not in NOT_TERMINAL:
                self.terminals[message.id] += 1
        elif isinstance(message, Started):
            self.started[message.id] = message
        elif isinstance(message, Output):
            self.output_bytes[message.id] += len(message.data)
            if self.credit:
                self.client.send(Credit(id=message.id, size=len(message.data)))
        return message

    def pump(self, timeout: float) -> Message:
        return self.record(self.client.recv(timeout))

    def pump_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            message = self.client.poll_message(remaining)
            if message is not None:
                self.record(message)

    def wait_terminal(self, ids: set[str] | None = None, timeout: float = 60.0) -> None:
        """Until every id in ``ids`` (default: all sent) got a terminal reply."""
        wanted = self.sent if ids is None else ids
        deadline = time.monotonic() + timeout
        while missing := [i for i in wanted if not self.terminals[i]]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no terminal reply within {timeout} s for {sorted(missing)[:10]}")
            self.pump(remaining)

    def barrier(self, timeout: float = 30.0) -> None:
        """Everything the gateway sent before answering a status request has been recorded."""
        self.barriers += 1
        barrier_id = f"barrier-{self.barriers}"
        self.client.send(StatusRequest(id=barrier_id))
        deadline = time.monotonic() + timeout
        while True:
            message = self.pump(max(0.01, deadline - time.monotonic()))
            if isinstance(message, StatusReply) and message.id == barrier_id:
                return

    def assert_balanced(self) -> None:
        """Each sent id: exactly one terminal; a raw one at most one per raw spawn; none for an id never sent."""
        self.wait_terminal()
        self.barrier()
        wrong = {
            i: self.terminals[i]
            for i in self.sent | set(self.terminals)
            if not (self.terminals[i] == 1 or (i not in self.sent and self.terminals[i] <= self.raw_spawns[i]))
        }
        assert not wrong, f"request ids with other than one terminal reply: {dict(list(wrong.items())[:10])}"


# --- a parse driven over the raw protocol ----------------------------------------------------------


def parse_request_frame(file: str, bundle_path: str, request_type: str = "DagFileParseRequest") -> bytes:
    """The first frame Airflow's ``DagFileProcessorProcess`` writes to a parse child's ``requests``."""
    from airflow.dag_processing.processor import DagFileParseRequest
    from airflow.sdk.execution_time.comms import _ResponseFrame

    body = DagFileParseRequest(
        file=file, bundle_path=Path(bundle_path), bundle_name="dags-folder", callback_requests=[]
    ).model_dump()
    body["type"] = request_type
    return bytes(_ResponseFrame(id=0, body=body).as_bytes())


def _empty_response(request_id: int) -> bytes:
    from airflow.sdk.execution_time.comms import _ResponseFrame

    return bytes(_ResponseFrame(id=request_id).as_bytes())


@dataclass
class RawParse:
    request_id: str
    started: Started | None = None
    terminal: Exited | Error | None = None
    outputs: dict[str, bytes] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        shown = {name: data[-1500:] for name, data in self.outputs.items()}
        return f"{self.request_id}: started={self.started} terminal={self.terminal} outputs={shown}"


def run_raw_parse(
    client: HostileClient,
    request_id: str,
    path: Path,
    *,
    first_frame: bytes | None = None,
    timeout: float = 60.0,
    spawn_timeout: float = 60.0,
    early: bool = False,
) -> RawParse:
    """Spawn, feed the parse request, answer the worker's result frame, until the terminal reply.

    The parse request is built before the spawn: building it imports Airflow's processor module into
    this process the first time, which on a loaded machine outlasts a short parse deadline. ``early``
    sends it right after the spawn (the gateway holds it for the worker), as the thin client does."""
    request = first_frame or parse_request_frame(str(path), str(path.parent))
    client.send(spawn_message(request_id, path, spawn_timeout))
    if early:
        client.send(Input(id=request_id, data=request))
    parse = RawParse(request_id)
    frames = _FrameReader()
    deadline = time.monotonic() + timeout
    while parse.terminal is None:
        remaining = deadline - time.monotonic()
        message = client.poll_message(remaining) if remaining > 0 else None
        if message is None:
            raise AssertionError(f"no terminal reply within {timeout} s: {parse.describe()}")
        if getattr(message, "id", None) != request_id:
            continue
        if isinstance(message, Started):
            parse.started = message
            if not early:
                client.send(Input(id=request_id, data=request))
        elif isinstance(message, Output):
            _on_output(client, parse, frames, message)
        elif isinstance(message, (Exited, Error)) and (not isinstance(message, Error) or _terminal(message)):
            parse.terminal = message
    return parse


def _terminal(error: Error) -> bool:
    return error.code not in NOT_TERMINAL


def _on_output(client: HostileClient, parse: RawParse, frames: _FrameReader, output: Output) -> None:
    parse.outputs[output.channel] = parse.outputs.get(output.channel, b"") + output.data
    client.send(Credit(id=parse.request_id, size=len(output.data)))
    if output.channel != "requests":
        return
    for frame_id, body in frames.feed(output.data):
        if isinstance(body, dict) and body.get("type") == "DagFileParsingResult":
            parse.results.append(body)
        client.send(Input(id=parse.request_id, data=_empty_response(frame_id)))


@dataclass
class _FrameReader:
    """Airflow's length-prefixed msgpack frames from the worker's ``requests`` channel."""

    buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[tuple[int, Any]]:
        self.buffer += data
        frames = []
        while len(self.buffer) >= 4:
            length = int.from_bytes(self.buffer[:4], "big")
            if len(self.buffer) < 4 + length:
                break
            decoded = msgspec.msgpack.decode(bytes(self.buffer[4 : 4 + length]))
            del self.buffer[: 4 + length]
            frames.append((int(decoded[0]), decoded[1] if len(decoded) > 1 else None))
        return frames
