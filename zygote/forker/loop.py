"""The forker: a single-threaded process with a frozen heap that forks one worker per request.

How this works: one selector loop over the gateway link, a signal wakeup socket, the workers'
report sockets and the probe's report socket; each registered with the handler that reads it.
SIGCHLD only wakes the loop; children are reaped with ``wait4(-1, WNOHANG)`` until none is left.
The :class:`WorkerTable` decides, this loop acts. A spawn becomes a worker through the
:class:`~zygote.forker.spawner.Spawner` (a warm-pool worker or a fork); every fork goes through
:func:`~zygote.forker.children.fork_child` (one safety check, one child prologue), and a failed
check retires the generation (the gateway starts a fresh one). Preload probes are scheduled by the :class:`ProbeRunner`. Children that
Airflow itself started during start-up (the secrets cache server) are the forker's own and survive
the stray-killing that follows every reaped worker. The forker never imports ``zmq`` and never
connects to the metadata DB.
"""

from __future__ import annotations

import gc
import math
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from protocol import (
    Drain,
    Error,
    ErrorCode,
    FrameBuffer,
    Message,
    Outcome,
    ProtocolError,
    Ready,
    Signal,
    Spawn,
    StatusReply,
    StatusRequest,
    frame,
)
from zygote import linux
from zygote.config import Settings
from zygote.forker.children import ForkRefused
from zygote.forker.frames import FINAL_BUDGET
from zygote.forker.measure import ModuleBaseline
from zygote.forker.pool_keeper import PoolKeeper
from zygote.forker.preload import ApprovedPatterns, Preloader, ProbeBounds, freeze_heap
from zygote.forker.probe import ProbeRunner
from zygote.forker.ready import generation_config
from zygote.forker.spawner import Spawner
from zygote.forker.warm_caches import warm_parse_caches
from zygote.forker.worker import WorkerLimits
from zygote.forker.worker_table import Action, KillGroup, KillWorker, SendExited, WorkerTable
from zygote.handshake import versions
from zygote.logs import get_logger

log = get_logger(__name__)


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
            settings.preload_cost_per_mib,
        )
        bounds = ProbeBounds(settings.probe_timeout, settings.probe_memory_limit * 2**20)
        self.probes = ProbeRunner(self.preloader, bounds, self.selector, settings.preload_interval)
        self.table = WorkerTable(self.preloader.approved.matches, settings.worker_cpu_limit)
        self.link_buffer = FrameBuffer()
        self.drain_at: float | None = None
        self.running = True
        self.gateway_lost = False
        self.baseline_modules = ModuleBaseline({})
        self.own_children: frozenset[int] = frozenset()
        self.next_sample_at = 0.0
        self.thp_mode = linux.transparent_huge_pages_mode()
        self.memory_reads = {"cheap": 0, "exact": 0}
        self.pool = PoolKeeper(
            settings.warm_workers, WorkerLimits(settings.worker_cpu_limit, settings.worker_open_files)
        )
        self.spawner = Spawner(
            settings, generation, self.selector, self.table, self.preloader, self.pool, self.send, self._act
        )

    def prepare(self) -> None:
        """Warm-up, eager preloads, then collect and freeze: the heap workers share."""
        from zygote.forker.warmup import run_warmup

        linux.become_subreaper()
        if self.thp_mode == "always":  # as Redis does; under madvise only regions asking for THP get it
            linux.disable_transparent_huge_pages()
        self._install_signals()
        self.preloader.observe(run_warmup(self.settings.warmup_timeout))
        self.preloader.observe(self.preloader.loaded_from_state_file())
        self.preloader.request_eager(self.settings.preload_modules)
        self.probes.run_blocking()
        if self.preloader.tainted:
            raise SystemExit("forker retired at start: a preload started a thread (remembered in the state file)")
        if self.settings.warm_parse_caches:  # ADR 0007: after the preloads, so it imports nothing new
            warm_parse_caches()
        freeze_heap()
        self.baseline_modules = ModuleBaseline()
        self.own_children = frozenset(linux.child_pids(self.pid))  # started by Airflow on purpose
        self.selector.register(self.link, selectors.EVENT_READ, self._read_link)
        log.info(
            "forker.ready",
            generation=self.generation,
            frozen=gc.get_freeze_count(),
            pid=self.pid,
            thp_mode=self.thp_mode,
            thp_disabled=linux.transparent_huge_pages_disabled(),
        )

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
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, self._read_signals)

    def ready_message(self) -> Ready:
        ours = versions()
        return Ready(
            generation=self.generation,
            pid=self.pid,
            airflow=ours["airflow"],
            python=ours["python"],
            frozen=gc.get_freeze_count(),
            config=generation_config(self.settings),
        )

    def run(self) -> None:
        """Serve until drained or the gateway is gone; then every worker has been reaped."""
        self.send(self.ready_message())
        while self.running:
            events = self.selector.select(self._next_timeout())
            for key, _ in events:
                handler: Callable[[], None] = key.data
                handler()
            now = time.monotonic()
            self._on_timers(now)
            if self.drain_at is None:
                self._after_promotion(self.probes.maybe_start(now))
                if not events:  # refill only on a turn with nothing else to do: off the request's path
                    self._refill_pool(now)
            self._maybe_finish_drain()
        for pid in self.own_children:  # nobody would reap Airflow's helpers after us
            linux.kill_quietly(pid)

    def _next_timeout(self) -> float:
        now = time.monotonic()
        candidates = [self.next_sample_at, now + 1.0]
        refill_at = self.pool.refill_at()
        if refill_at is not None and self.drain_at is None:
            candidates.append(refill_at)
        for deadline in (self.table.next_deadline(), self.drain_at, self.probes.deadline()):
            if deadline:
                candidates.append(deadline)
        return max(0.0, min(candidates) - now)

    def _on_timers(self, now: float) -> None:
        self._act(self.table.expire(now))
        if now >= self.next_sample_at:
            self._sample_memory()
            sampling = self.settings.worker_memory_limit > 0
            self.next_sample_at = now + self.settings.memory_sample_interval if sampling else math.inf
        if self.drain_at is not None and now >= self.drain_at and len(self.table):
            self._act(self.table.kill_all(Outcome.DRAIN_TIMEOUT))
            self.drain_at = None
        self.probes.on_timer(now)

    def _sample_memory(self) -> None:
        """Enforce ``worker_memory_limit`` from cheap counters, reading the exact USS only near it.

        A ``smaps_rollup`` read costs milliseconds for a worker that maps the forker's heap, in
        the thread that forks; ``/proc/<pid>/stat`` bounds the USS from above (memory_watch.py).
        Without a limit nothing is sampled: the worker's own end-of-parse report gives its USS/PSS.
        """
        limit = self.settings.worker_memory_limit * 2**20
        for pid in self.table.pids():
            counters = linux.stat_memory(pid)
            self.memory_reads["cheap"] += 1
            if counters is None or not self.table.cheap_sample(pid, *counters, limit):
                continue
            memory = linux.smaps_memory(pid)
            self.memory_reads["exact"] += 1
            if memory:
                self._act(self.table.sample_memory(pid, memory["uss"], memory["pss"], limit, counters))

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
            self.pool.close()
            log.info("forker.draining", generation=self.generation, workers=len(self.table))
        else:
            log.warning("forker.unexpected_message", type=message.TYPE)

    def _gateway_gone(self) -> None:
        """No gateway, no client: kill every worker and what it started, since nobody reaps after us."""
        if self.gateway_lost:
            return
        self.gateway_lost = True
        log.warning("forker.gateway_gone", workers=len(self.table))
        self.pool.close()
        for pid in self.table.pids():
            self._kill_leftovers(pid)
        self._act(self.table.kill_all(Outcome.CLIENT_GONE))
        self.running = False

    def send(self, message: Message, fds: list[int] | None = None) -> None:
        """Write to the gateway; a dead link (``EPIPE``) is the gateway gone, cleaned up as at EOF."""
        if self.gateway_lost:
            return
        data = frame(message)
        try:
            if fds:
                sent = socket.send_fds(self.link, [data], fds)
                data = data[sent:]
            if data:
                self.link.sendall(data)
        except OSError:
            self._gateway_gone()

    def _spawn(self, spawn: Spawn) -> None:
        if self.drain_at is not None:
            self.spawner.refuse(spawn, ErrorCode.FORK_REFUSED, "the forker is draining")
            return
        try:
            self.spawner.spawn(spawn, self.baseline_modules)
        except ForkRefused as exc:
            self._retire(f"{exc}; this generation is retired")

    def _refill_pool(self, now: float) -> None:
        try:
            self.pool.refill(now, self.baseline_modules)
        except ForkRefused as exc:
            self._retire(f"{exc}; this generation is retired")

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
        if pid == self.probes.pid:
            self._after_promotion(self.probes.on_reaped(exit_code))
            return
        if pid in self.pool:
            self.pool.reaped(pid, exit_code)
            return
        if pid not in self.table:
            return
        self.spawner.read_report(pid, FINAL_BUDGET)
        self.spawner.forget_report(pid)
        usage = {"cpu_user_s": rusage.ru_utime, "cpu_system_s": rusage.ru_stime, "peak_rss": rusage.ru_maxrss * 1024}
        self._act(self.table.reaped(pid, exit_code, usage, time.monotonic()))

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
        keep = {*self.table.pids(), *self.pool.pids(), *self.own_children, self.probes.pid}
        for pid in linux.child_pids(self.pid):
            if pid not in keep:
                stray = linux.kill_quietly(pid) or stray
        if stray:
            log.info("worker.strays_killed", pgid=pgid)

    def _after_promotion(self, promoted: list[str]) -> None:
        if promoted:
            self.baseline_modules = ModuleBaseline()
            self.pool.heap_changed()  # an idle worker holds the heap before the promotion
            log.info(
                "preload.loaded",
                modules=len(promoted),
                frozen=gc.get_freeze_count(),
                threads=linux.native_thread_count(),
            )
        if self.preloader.tainted:
            self._retire("a preloaded module started a thread in the forker; this generation is retired")

    def _retire(self, why: str) -> None:
        """Unsafe to fork from now on: fork no more, finish the workers, let the gateway replace us."""
        if self.drain_at is not None:
            return
        log.error("forker.retiring", generation=self.generation, reason=why, threads=linux.native_thread_count())
        self.pool.close()
        self.drain_at = time.monotonic() + self.settings.worker_timeout
        self.send(Error(id="", code=ErrorCode.FORK_REFUSED.value, message=why))

    def _maybe_finish_drain(self) -> None:
        if self.drain_at is not None and not len(self.table) and not self.pool.pids():
            if self.probes.pid is not None:
                self.probes.kill()
                return
            self.running = False

    def status(self) -> dict[str, Any]:
        memory = linux.smaps_memory()
        top_costs = sorted(self.spawner.import_costs.items(), key=lambda item: -item[1])[:50]
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
                "fork_failures": self.spawner.fork_failures,
                "memory_reads": dict(self.memory_reads),
                "pooled": len(self.pool),
                "pool": self.pool.status(),
                "thp_mode": self.thp_mode,
                "thp_disabled": linux.transparent_huge_pages_disabled(),
                "promoting": self.probes.promoting,
            },
            "preload": self.preloader.status(),
            "import_costs": dict(top_costs),
        }


def _note_signal(signum: int, frame: Any) -> None:
    """Signals only wake the loop (through the wakeup fd); the loop does the work."""
