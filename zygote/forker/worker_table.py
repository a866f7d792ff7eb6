"""The forker's table of live workers: events in, actions out, no I/O.

How this works: every worker enters as RUNNING when forked. Kill requests (client signal,
deadline, memory limit, drain) move it to KILLING and remember why. A RUNNING worker's report that
carries ``ending`` (it is calling ``os._exit``, its channels shut) moves it to FINISHED and produces
the terminal :class:`~protocol.Exited` at once, so the kernel's teardown of the worker stays off the
request's path; otherwise ``reaped`` produces it. Each worker yields exactly one, whatever order
reports, samples and kills arrive in; once reaped the worker is forgotten. The table decides
why a worker ended, so it also words the ``note`` for the limits it enforced (the memory limit it
was given, the deadline it set, the CPU limit the worker ran under).
"""

from __future__ import annotations

import enum
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocol import Exited, Outcome, WorkerReport, outcome_of
from zygote.forker.memory_watch import UssBound, needs_exact

IMPORTS_IN_STATS = 100
"""Most expensive imports a terminal reply carries (for preload advice)."""
IMPORT_FLOOR_S = 0.001
"""Imports faster than this are left out of the stats, unless they are preload candidates."""
USAGE_KEYS = ("cpu_user_s", "cpu_system_s", "peak_rss")
"""What a worker's ``ending`` says of its resource use, as ``wait4`` would."""
CPU_SLACK_S = 0.1
"""CPU seconds under the limit that still count as having reached it (rusage granularity)."""


class WorkerState(enum.Enum):
    RUNNING = "running"
    KILLING = "killing"
    FINISHED = "finished"


@dataclass(frozen=True)
class KillWorker:
    pid: int
    signum: int


@dataclass(frozen=True)
class KillGroup:
    """Kill what the worker left behind in its process group."""

    pgid: int


@dataclass(frozen=True)
class SendExited:
    message: Exited


Action = KillWorker | KillGroup | SendExited


@dataclass
class Worker:
    request_id: str
    pid: int
    started_at: float
    deadline_at: float
    fork_ms: float
    path: str
    state: WorkerState = WorkerState.RUNNING
    kill_reason: Outcome | None = None
    kill_note: str = ""
    peak_uss: int = 0
    peak_pss: int = 0
    report: WorkerReport | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    uss_bound: UssBound = field(default_factory=UssBound)


def _never(module: str) -> bool:
    return False


class WorkerTable:
    """Live workers by pid and by request id.

    ``always_report`` names the modules whose import time a terminal reply carries however small
    (the approved ones): their absence then means the worker did not import them at all.
    """

    def __init__(self, always_report: Callable[[str], bool] = _never, cpu_limit_s: int = 0) -> None:
        self._by_pid: dict[int, Worker] = {}
        self._by_id: dict[str, int] = {}
        self._always_report = always_report
        self._cpu_limit_s = cpu_limit_s

    def __len__(self) -> int:
        return len(self._by_pid)

    def __contains__(self, pid: object) -> bool:
        return pid in self._by_pid

    def pids(self) -> list[int]:
        return list(self._by_pid)

    def add(self, worker: Worker) -> None:
        if worker.request_id in self._by_id:
            raise ValueError(f"request {worker.request_id} already has a worker")
        self._by_pid[worker.pid] = worker
        self._by_id[worker.request_id] = worker.pid

    def request_signal(self, request_id: str, signum: int) -> list[Action]:
        """A client signal; a no-op for a worker that is gone (it may have just exited)."""
        pid = self._by_id.get(request_id)
        if pid is None:
            return []
        return self._kill(self._by_pid[pid], signum, Outcome.KILLED)

    def expire(self, now: float) -> list[Action]:
        """SIGKILL every running worker whose deadline passed."""
        actions: list[Action] = []
        for worker in self._by_pid.values():
            if worker.state is WorkerState.RUNNING and now >= worker.deadline_at:
                actions += self._kill(worker, signal.SIGKILL, Outcome.DEADLINE)
        return actions

    def cheap_sample(self, pid: int, faults: int, rss: int, limit: int) -> bool:
        """Record a worker's fault and RSS counters; True when its exact USS must be read now."""
        worker = self._by_pid.get(pid)
        if worker is None or worker.state is not WorkerState.RUNNING:
            return False
        worker.uss_bound.observe(faults, rss)
        return needs_exact(worker.uss_bound.bound(faults, rss), limit)

    def sample_memory(
        self, pid: int, uss: int, pss: int, limit: int, counters: tuple[int, int] | None = None
    ) -> list[Action]:
        """Record an exact sample; SIGKILL a worker over ``limit`` bytes of USS (0: no limit).

        ``counters`` are the worker's (faults, RSS) read just before: the cheap bound restarts there.
        """
        worker = self._by_pid.get(pid)
        if worker is None:
            return []
        if counters is not None:
            worker.uss_bound.rebase(uss, *counters)
        worker.peak_uss = max(worker.peak_uss, uss)
        worker.peak_pss = max(worker.peak_pss, pss)
        if limit and uss > limit and worker.state is WorkerState.RUNNING:
            note = f"[airflow-zygote] killed: memory limit {limit // 2**20} MiB\n"
            return self._kill(worker, signal.SIGKILL, Outcome.MEMORY_LIMIT, note)
        return []

    def kill_all(self, reason: Outcome) -> list[Action]:
        """SIGKILL everything (drain timeout, gateway gone)."""
        actions: list[Action] = []
        for worker in self._by_pid.values():
            actions += self._kill(worker, signal.SIGKILL, reason)
        return actions

    def record_report(self, pid: int, report: WorkerReport, now: float) -> list[Action]:
        """Keep the report; a running worker's ``ending`` is its terminal reply (a killed one's is the reap's)."""
        worker = self._by_pid.get(pid)
        if worker is None:
            return []
        worker.report = report
        code = report.ending.get("exit_code")
        if worker.state is not WorkerState.RUNNING or not isinstance(code, int) or isinstance(code, bool):
            return []
        worker.state = WorkerState.FINISHED
        usage = {key: report.ending[key] for key in USAGE_KEYS if key in report.ending}
        return [SendExited(self._exited(worker, code, usage, now))]

    def reaped(self, pid: int, exit_code: int, rusage: dict[str, float], now: float) -> list[Action]:
        """The worker was waited for: clean up its group and emit its terminal reply unless it did."""
        worker = self._by_pid.pop(pid, None)
        if worker is None:
            return []
        del self._by_id[worker.request_id]
        if worker.state is WorkerState.FINISHED:
            return [KillGroup(pid)]
        return [KillGroup(pid), SendExited(self._exited(worker, exit_code, rusage, now))]

    def _exited(self, worker: Worker, exit_code: int, rusage: dict[str, float], now: float) -> Exited:
        outcome = outcome_of(exit_code, worker.kill_reason)
        stats = _stats(worker, rusage, now, self._always_report)
        note = self._note(worker, outcome, exit_code, stats)
        return Exited(id=worker.request_id, exit_code=exit_code, outcome=outcome.value, stats=stats, note=note)

    def next_deadline(self) -> float | None:
        running = [w.deadline_at for w in self._by_pid.values() if w.state is WorkerState.RUNNING]
        return min(running, default=None)

    def _kill(self, worker: Worker, signum: int, reason: Outcome, note: str = "") -> list[Action]:
        if worker.state is WorkerState.RUNNING:
            worker.state = WorkerState.KILLING
            worker.kill_reason = reason
            worker.kill_note = note
        return [KillWorker(worker.pid, signum)]

    def _note(self, worker: Worker, outcome: Outcome, exit_code: int, stats: dict[str, Any]) -> str:
        """The per-file log line for a worker our own limits ended, else ""."""
        if outcome is Outcome.DEADLINE:
            return f"[airflow-zygote] killed: zygote deadline reached after {stats['wall_s']:.1f} s\n"
        if outcome is Outcome.MEMORY_LIMIT:
            return worker.kill_note
        if outcome is Outcome.SIGNALED and self._cpu_limited(exit_code, stats):
            return f"[airflow-zygote] killed: CPU time limit {self._cpu_limit_s} s\n"
        return ""

    def _cpu_limited(self, exit_code: int, stats: dict[str, Any]) -> bool:
        """RLIMIT_CPU ends a worker with SIGXCPU, or SIGKILL when its hard limit equals the soft one."""
        if not self._cpu_limit_s or exit_code not in (-signal.SIGXCPU, -signal.SIGKILL):
            return False
        used = float(stats.get("cpu_user_s", 0.0)) + float(stats.get("cpu_system_s", 0.0))
        return used >= self._cpu_limit_s - CPU_SLACK_S


def _stats(
    worker: Worker, rusage: dict[str, float], now: float, always_report: Callable[[str], bool]
) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "pid": worker.pid,
        "wall_s": now - worker.started_at,
        "fork_ms": worker.fork_ms,
        "peak_uss": worker.peak_uss,
        "peak_pss": worker.peak_pss,
        **rusage,
        **worker.extra,
    }
    report = worker.report
    if report is not None:
        stats["peak_uss"] = max(worker.peak_uss, int(report.memory.get("uss", 0)))
        stats["peak_pss"] = max(worker.peak_pss, int(report.memory.get("pss", 0)))
        stats.update({f"gc_{key}": value for key, value in report.gc.items()})
        if "start_monotonic" in report.memory:
            stats["start_monotonic"] = report.memory["start_monotonic"]
        stats["imported"] = len(report.modules)
        stats["imports"] = _top_imports(report.modules, always_report)
    return stats


def _top_imports(modules: dict[str, Any], always_report: Callable[[str], bool]) -> dict[str, float]:
    timed = sorted(
        ((float(s), m) for m, s in modules.items() if float(s) >= IMPORT_FLOOR_S or always_report(m)), reverse=True
    )
    return {name: seconds for seconds, name in timed[:IMPORTS_IN_STATS]}
