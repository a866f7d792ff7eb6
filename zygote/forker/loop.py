"""The forker: a single-threaded process with a frozen heap that forks one worker per request.

How this works: one selector loop over the gateway link, a signal wakeup socket, the workers'
report sockets and the probe's report socket. SIGCHLD only wakes the loop; children are reaped
with ``wait4(-1, WNOHANG)`` until none is left. The :class:`WorkerTable` decides, this loop acts.
Before every fork: exactly one native thread and GC enabled, or the fork is refused. Preload
candidates are probed in a throwaway child and imported here between forks, then the heap is
re-frozen. The forker never imports ``zmq`` and never connects to the metadata DB.
"""

from __future__ import annotations

import gc
import math
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from protocol import (
    Drain,
    Error,
    ErrorCode,
    FrameBuffer,
    Message,
    ProbeReport,
    ProtocolError,
    Ready,
    Signal,
    Spawn,
    Started,
    StatusReply,
    StatusRequest,
    WorkerReport,
    frame,
)
from zygote import linux
from zygote.config import Settings
from zygote.forker.preload import ApprovedPatterns, Preloader, ProbeBounds, run_probe
from zygote.forker.worker import ChannelPairs, WorkerLimits, run_worker
from zygote.forker.worker_table import (
    Action,
    KillGroup,
    KillWorker,
    SendExited,
    Worker,
    WorkerTable,
)
from zygote.logs import get_logger

log = get_logger(__name__)

DEADLINE_GRACE_S = 5.0
"""The zygote's deadline trails the client's timeout so Airflow's own kill path acts first."""


@dataclass
class Probe:
    pid: int
    sock: socket.socket
    batch: list[str]
    deadline_at: float
    buffer: FrameBuffer = field(default_factory=FrameBuffer)


class Forker:
    """One generation of the forker."""

    def __init__(self, settings: Settings, link: socket.socket, generation: int) -> None:
        self.settings = settings
        self.link = link
        self.generation = generation
        self.pid = os.getpid()
        self.selector = selectors.DefaultSelector()
        self.preloader = Preloader(
            ApprovedPatterns.with_airflow(settings.approved_modules),
            settings.approved_modules,
            settings.preload_state_file,
        )
        self.table = WorkerTable(always_report=self.preloader.approved.matches)
        self.reports: dict[int, tuple[socket.socket, FrameBuffer]] = {}
        self.link_buffer = FrameBuffer()
        self.probe: Probe | None = None
        self.drain_at: float | None = None
        self.running = True
        self.baseline_modules: frozenset[str] = frozenset()
        self.next_sample_at = 0.0
        self.import_costs: dict[str, float] = {}
        self.limits = WorkerLimits(settings.worker_cpu_limit, settings.worker_open_files)
        self.bounds = ProbeBounds(settings.probe_timeout, settings.probe_memory_limit * 2**20)

    # --- start-up --------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Warm-up, eager preloads, then collect and freeze: the heap workers share."""
        linux.become_subreaper()
        self._install_signals()
        self.preloader.observe(self._run_warmup())
        self.preloader.observe(self.preloader.loaded_from_state_file())
        self.preloader.request_eager(self.settings.preload_modules)
        self._probe_blocking()
        if self.preloader.tainted:
            raise SystemExit("forker retired at start: a preload started a thread (remembered in the state file)")
        gc.collect()
        gc.freeze()
        self.baseline_modules = frozenset(sys.modules)
        self.selector.register(self.link, selectors.EVENT_READ, "link")
        log.info("forker.ready", generation=self.generation, frozen=gc.get_freeze_count(), pid=self.pid)

    def _install_signals(self) -> None:
        self.wakeup_r, wakeup_w = socket.socketpair()
        self.wakeup_r.setblocking(False)
        wakeup_w.setblocking(False)
        self._wakeup_w = wakeup_w
        signal.set_wakeup_fd(wakeup_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, _note_signal)
        # The gateway alone decides when a generation ends (drain over the link, or EOF when it
        # dies). Terminal signals are ignored: a worker can signal its parent, and DAG code must
        # not be able to stop the forker.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "signal")

    def _run_warmup(self) -> list[str]:
        from zygote.forker.warmup import run_warmup_child

        report_r, report_w = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            report_r.close()
            run_warmup_child(report_w)
        report_w.close()
        messages = _read_until_eof(report_r, time.monotonic() + 120)
        _reap_blocking(pid)
        return [name for msg in messages if isinstance(msg, WorkerReport) for name in msg.modules]

    def _probe_blocking(self) -> None:
        """Probe and promote everything pending, synchronously (start-up only)."""
        while self.preloader.has_pending():
            batch = self.preloader.take_batch()
            pid, report_r, deadline = self._fork_probe(batch)
            messages = _read_until_eof(report_r, deadline)
            linux.kill_quietly(pid)
            exit_code = _reap_blocking(pid)
            self._finish_probe(batch, messages, exit_code)

    def ready_message(self) -> Ready:
        from zygote.handshake import versions

        ours = versions()
        return Ready(
            generation=self.generation,
            pid=self.pid,
            airflow=ours["airflow"],
            python=ours["python"],
            frozen=gc.get_freeze_count(),
        )

    # --- the loop --------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until drained or the gateway is gone; then every worker has been reaped."""
        self.send(self.ready_message())
        while self.running:
            timeout = self._next_timeout()
            for key, _ in self.selector.select(timeout):
                self._dispatch(key)
            self._on_timers(time.monotonic())
            self._maybe_start_probe()
            self._maybe_finish_drain()

    def _dispatch(self, key: selectors.SelectorKey) -> None:
        kind = key.data
        if kind == "link":
            self._read_link()
        elif kind == "signal":
            self._read_signals()
        elif kind == "probe":
            self._read_probe()
        else:
            self._read_report(int(kind))

    def _next_timeout(self) -> float:
        now = time.monotonic()
        candidates = [self.next_sample_at, now + 1.0]
        for deadline in (self.table.next_deadline(), self.drain_at, self.probe and self.probe.deadline_at):
            if deadline:
                candidates.append(deadline)
        return max(0.0, min(candidates) - now)

    def _on_timers(self, now: float) -> None:
        self._act(self.table.expire(now))
        if now >= self.next_sample_at:
            self._sample_memory()
            self.next_sample_at = now + self.settings.memory_sample_interval
        if self.drain_at is not None and now >= self.drain_at and len(self.table):
            self._act(self.table.kill_all("drain_timeout"))
            self.drain_at = None
        if self.probe is not None and now >= self.probe.deadline_at:
            linux.kill_quietly(self.probe.pid)

    def _sample_memory(self) -> None:
        limit = self.settings.worker_memory_limit * 2**20
        for pid in self.table.pids():
            memory = linux.smaps_memory(pid)
            if memory:
                self._act(self.table.sample_memory(pid, memory["uss"], memory["pss"], limit))

    # --- gateway link ----------------------------------------------------------------------------

    def _read_link(self) -> None:
        try:
            data = self.link.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._gateway_gone()
            return
        try:
            messages = self.link_buffer.feed(data)
        except ProtocolError as exc:
            log.error("forker.link_corrupt", error=str(exc))
            self._gateway_gone()
            return
        for message in messages:
            self._handle(message)

    def _handle(self, message: Message) -> None:
        if isinstance(message, Spawn):
            self._spawn(message)
        elif isinstance(message, Signal):
            self._act(self.table.request_signal(message.id, message.signum))
        elif isinstance(message, StatusRequest):
            self.send(StatusReply(id=message.id, status=self.status()))
        elif isinstance(message, Drain):
            self.drain_at = time.monotonic() + message.deadline_s
            log.info("forker.draining", generation=self.generation, workers=len(self.table))
        else:
            log.warning("forker.unexpected_message", type=message.TYPE)

    def _gateway_gone(self) -> None:
        """No gateway, no client: kill every worker and what it started, since nobody reaps after us."""
        log.warning("forker.gateway_gone", workers=len(self.table))
        for pid in self.table.pids():
            self._kill_leftovers(pid)
        self._act(self.table.kill_all("client_gone"))
        self.running = False

    def send(self, message: Message, fds: list[int] | None = None) -> None:
        data = frame(message)
        if fds:
            sent = socket.send_fds(self.link, [data], fds)
            data = data[sent:]
        if data:
            self.link.sendall(data)

    # --- workers ---------------------------------------------------------------------------------

    def _spawn(self, spawn: Spawn) -> None:
        refusal = self._fork_refusal()
        if refusal:
            log.error("forker.fork_refused", request_id=spawn.id, reason=refusal)
            self.send(Error(id=spawn.id, code=ErrorCode.FORK_REFUSED.value, message=refusal))
            return
        received = time.monotonic()
        pairs = ChannelPairs.create()
        pid = os.fork()
        if pid == 0:
            run_worker(pairs, spawn.cwd, self.limits, self.baseline_modules, self.pid)
        fork_ms = (time.monotonic() - received) * 1000
        self._track_worker(spawn, pid, pairs, received, fork_ms)

    def _fork_refusal(self) -> str:
        if self.drain_at is not None:
            return "the forker is draining"
        threads = linux.native_thread_count()
        if threads != 1:
            return f"the forker has {threads} native threads; forking now could deadlock the worker"
        if not gc.isenabled():
            return "garbage collection is disabled in the forker"
        return ""

    def _track_worker(self, spawn: Spawn, pid: int, pairs: ChannelPairs, started: float, fork_ms: float) -> None:
        pairs.close_child_ends()
        asked = spawn.timeout if math.isfinite(spawn.timeout) and spawn.timeout > 0 else self.settings.worker_timeout
        timeout = min(asked + DEADLINE_GRACE_S, self.settings.worker_timeout)  # NaN would never expire
        worker = Worker(spawn.id, pid, started, started + timeout, fork_ms, spawn.path)
        worker.extra["generation"] = self.generation
        self.table.add(worker)
        report = pairs.parent["report"]
        report.setblocking(False)
        self.reports[pid] = (report, FrameBuffer())
        self.selector.register(report, selectors.EVENT_READ, str(pid))
        started_msg = Started(id=spawn.id, pid=pid, generation=self.generation, fork_ms=fork_ms)
        self.send(started_msg, pairs.relayed_parent_fds())
        pairs.close_relayed_parent_ends()
        log.debug("worker.spawned", request_id=spawn.id, pid=pid, fork_ms=round(fork_ms, 3))

    def _read_report(self, pid: int) -> None:
        entry = self.reports.get(pid)
        if entry is None:
            return
        sock, buffer = entry
        for message in _drain_nonblocking(sock, buffer):
            if isinstance(message, WorkerReport):
                self.table.record_report(pid, message)
                self.preloader.observe(message.modules)
                self._count_import_costs(message.modules)

    def _count_import_costs(self, modules: dict[str, Any]) -> None:
        """Sum the import time of each unapproved top-level import, for preload advice."""
        for name, seconds in modules.items():
            parent = name.rpartition(".")[0]
            if parent in modules or self.preloader.approved.matches(name) or not seconds:
                continue
            self.import_costs[name] = self.import_costs.get(name, 0.0) + float(seconds)

    def _read_signals(self) -> None:
        try:
            self.wakeup_r.recv(4096)  # only SIGCHLD is caught: reap
        except (BlockingIOError, InterruptedError):
            return
        self._reap()

    def _reap(self) -> None:
        while True:
            try:
                pid, status, rusage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._on_reaped(pid, status, rusage)

    def _on_reaped(self, pid: int, status: int, rusage: Any) -> None:
        exit_code = linux.exit_code_from_status(status)
        if self.probe is not None and pid == self.probe.pid:
            self._on_probe_reaped(exit_code)
            return
        if pid not in self.table:
            return
        self._read_report(pid)
        self._forget_report(pid)
        usage = {
            "cpu_user_s": rusage.ru_utime,
            "cpu_system_s": rusage.ru_stime,
            "peak_rss": rusage.ru_maxrss * 1024,
        }
        self._act(self.table.reaped(pid, exit_code, usage, time.monotonic()))

    def _forget_report(self, pid: int) -> None:
        sock, _ = self.reports.pop(pid)
        self.selector.unregister(sock)
        sock.close()

    def _act(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, KillWorker):
                linux.kill_quietly(action.pid, action.signum)
            elif isinstance(action, KillGroup):
                self._kill_leftovers(action.pgid)
            elif isinstance(action, SendExited):
                self.send(action.message)

    def _kill_leftovers(self, pgid: int) -> None:
        """Kill the worker's group and any orphan re-parented to us that is not ours to keep."""
        stray = linux.kill_group_quietly(pgid)
        keep = set(self.table.pids()) | ({self.probe.pid} if self.probe else set())
        for pid in linux.child_pids(self.pid):
            if pid not in keep:
                stray = linux.kill_quietly(pid) or stray
        if stray:
            log.info("worker.strays_killed", pgid=pgid)

    # --- preloading ------------------------------------------------------------------------------

    def _fork_probe(self, batch: list[str]) -> tuple[int, socket.socket, float]:
        """Fork a probe child for ``batch``: its pid, the socket its verdicts arrive on, its deadline."""
        report_r, report_w = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            report_r.close()
            run_probe(batch, report_w, self.bounds)
        report_w.close()
        return pid, report_r, time.monotonic() + self.bounds.timeout_s * len(batch) + 5

    def _maybe_start_probe(self) -> None:
        if self.probe is not None or self.drain_at is not None or not self.preloader.has_pending():
            return
        batch = self.preloader.take_batch()
        pid, report_r, deadline = self._fork_probe(batch)
        report_r.setblocking(False)
        self.probe = Probe(pid, report_r, batch, deadline)
        self.selector.register(report_r, selectors.EVENT_READ, "probe")
        log.info("preload.probing", modules=len(batch), first=batch[0])

    def _read_probe(self) -> None:
        if self.probe is None:  # reaped earlier in this same batch of events
            return
        for message in _drain_nonblocking(self.probe.sock, self.probe.buffer):
            if isinstance(message, ProbeReport):
                self.preloader.on_probe_report(message)

    def _on_probe_reaped(self, exit_code: int) -> None:
        assert self.probe is not None
        probe, self.probe = self.probe, None
        for message in _drain_nonblocking(probe.sock, probe.buffer):
            if isinstance(message, ProbeReport):
                self.preloader.on_probe_report(message)
        self.selector.unregister(probe.sock)
        probe.sock.close()
        why = "" if exit_code == 0 else f"probe ended with {exit_code} (import crashed or timed out)"
        self._finish_probe(probe.batch, [], exit_code, why)

    def _finish_probe(self, batch: list[str], messages: list[Message], exit_code: int, why: str = "") -> None:
        for message in messages:
            if isinstance(message, ProbeReport):
                self.preloader.on_probe_report(message)
        if not why and exit_code != 0:
            why = f"probe ended with {exit_code} (import crashed or timed out)"
        self.preloader.on_probe_end(batch, why)
        promoted = self.preloader.promote_verified()
        if promoted:
            self.baseline_modules = frozenset(sys.modules)
            log.info(
                "preload.loaded",
                modules=len(promoted),
                frozen=gc.get_freeze_count(),
                threads=linux.native_thread_count(),
            )
        if self.preloader.tainted and self.drain_at is None:
            self._retire()

    def _retire(self) -> None:
        """A promotion left a thread here: fork no more, finish the workers, let the gateway replace us."""
        why = "a preloaded module started a thread in the forker; this generation is retired"
        log.error("forker.retiring", generation=self.generation, reason=why, threads=linux.native_thread_count())
        self.drain_at = time.monotonic() + self.settings.worker_timeout
        self.send(Error(id="", code=ErrorCode.FORK_REFUSED.value, message=why))

    def _maybe_finish_drain(self) -> None:
        if self.drain_at is not None and not len(self.table):
            if self.probe is not None:
                linux.kill_quietly(self.probe.pid)
                return
            self.running = False

    # --- status ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        memory = linux.smaps_memory()
        top_costs = sorted(self.import_costs.items(), key=lambda item: -item[1])[:50]
        return {
            "forker": {
                "pid": self.pid,
                "generation": self.generation,
                "threads": linux.native_thread_count(),
                "frozen_objects": gc.get_freeze_count(),
                "rss": memory.get("rss", 0),
                "uss": memory.get("uss", 0),
                "state": "draining" if self.drain_at is not None else "ready",
                "running": len(self.table),
            },
            "preload": self.preloader.status(),
            "import_costs": dict(top_costs),
        }


def _note_signal(signum: int, frame: Any) -> None:
    """Signals only wake the loop (through the wakeup fd); the loop does the work."""


def _drain_nonblocking(sock: socket.socket, buffer: FrameBuffer) -> list[Message]:
    messages: list[Message] = []
    while True:
        try:
            data = sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return messages
        except OSError:
            return messages
        if not data:
            return messages
        try:
            messages += buffer.feed(data)
        except ProtocolError:
            return messages


def _read_until_eof(sock: socket.socket, deadline: float) -> list[Message]:
    buffer = FrameBuffer()
    messages: list[Message] = []
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        try:
            data = sock.recv(1 << 16)
        except (TimeoutError, OSError):
            break
        if not data:
            break
        try:
            messages += buffer.feed(data)
        except ProtocolError:
            break
    sock.close()
    return messages


def _reap_blocking(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return -1
        except InterruptedError:
            continue
        return linux.exit_code_from_status(status)
