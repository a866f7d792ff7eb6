"""Real dag-processors for fault scenarios: start, freeze, measure, stop; and a health sampler.

The dag-processor is ``airflow zygote dag-processor`` or stock ``airflow dag-processor`` as a child of
the test, in its own session so a stop reaches its parse children too. Only processes a test started
are signalled, by pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from fault_home import FaultHome
from zygote_harness import AIRFLOW, ZygoteProcess, wait_for


@dataclass
class DagProcessor:
    popen: subprocess.Popen[bytes]
    log_path: Path
    home: FaultHome

    @classmethod
    def start(cls, home: FaultHome, stock: bool = False) -> DagProcessor:
        argv = [AIRFLOW, "dag-processor"] if stock else [AIRFLOW, "zygote", "dag-processor"]
        log_path = home.root / f"{'stock' if stock else 'zygote'}-dag-processor.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(argv, env=home.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return cls(popen, log_path, home)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def remote_parses(self, since: float = 0.0) -> int:
        return sum(1 for p in self.home.parses() if p.at >= since and p.ppid != self.pid)

    def local_parses(self, since: float = 0.0) -> int:
        return sum(1 for p in self.home.parses() if p.at >= since and p.ppid == self.pid)

    def wait_parses(self, count: int, timeout: float, since: float = 0.0) -> None:
        def enough() -> bool:
            assert self.alive(), f"dag-processor exited {self.popen.returncode}:\n{self.log_text()[-4000:]}"
            return len([p for p in self.home.parses() if p.at >= since]) >= count

        wait_for(enough, timeout, f"{count} parses by {self.log_path.name}", interval=0.2)

    def parse_count(self) -> int:
        return len(self.home.parses())

    def stop(self, timeout: float = 60.0) -> None:
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(10)


@dataclass
class HealthSampler:
    """Samples the DagProcessorJob heartbeat age once a second in a thread, like a liveness probe."""

    home: FaultHome
    ages: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> HealthSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            age = self.home.heartbeat_age()
            if age is not None:
                self.ages.append((time.time(), age))

    def worst(self, start: float, end: float) -> float:
        within = [age for at, age in self.ages if start <= at <= end]
        assert within, "no heartbeat sample in the window"
        return max(within)


def rate(home: FaultHome, start: float, end: float) -> float:
    """Parses per second that began in [start, end)."""
    return len(home.parses_between(start, end)) / (end - start)


def forker_pid(zygote: ZygoteProcess) -> int:
    pid = zygote.status(timeout=10)["forker"]["pid"]
    assert isinstance(pid, int), pid
    return pid


def wait_progressing(done: Any, counts: Any, stall: float, what: str) -> None:
    """Wait for ``done()`` however long steady progress takes; fail once a count stood still ``stall`` s.

    ``counts()`` maps each thing still working to its progress count (a soak's parses per side).
    For work whose amount is the point, a fixed deadline would only say how fast the machine was;
    a count that stops moving says the product stopped.
    """
    moved: dict[str, tuple[int, float]] = {}
    while not done():
        now = time.monotonic()
        for name, count in counts().items():
            if name not in moved or moved[name][0] != count:
                moved[name] = (count, now)
            assert now - moved[name][1] < stall, f"{name}: no progress in {stall:.0f} s ({count}) waiting for {what}"
        time.sleep(0.5)


DAG_FILE_PROCESSOR_TIMEOUT = 50.0
"""Airflow's default ``[dag_processor] dag_file_processor_timeout``: the longest one parse runs before it is killed."""

HEALTH_CHECK_THRESHOLD = 30.0
"""Airflow's default ``[dag_processor] health_check_threshold``: what ``/health`` and the probe allow."""

REFUSALS = frozenset(
    {
        "rejected_path",
        "not_ready",
        "overloaded",
        "fork_failed",
        "fork_refused",
        "forker_lost",
        "client_gone",
        "internal",
    }
)
"""Status outcomes of a parse the zygote did not run to its end (``killed``/``signaled`` are the manager's own)."""


def requests(zygote: ZygoteProcess) -> dict[str, Any]:
    counts: dict[str, Any] = zygote.status(timeout=10)["requests"]
    return counts


def wait_quiet(seconds: float) -> None:
    """Let a fault last ``seconds`` of wall time (the fault's length is the point, not a sync)."""
    time.sleep(seconds)
