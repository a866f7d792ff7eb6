"""The dag-processor never waits on a zygote that cannot answer: it keeps parsing (fallback local).

One zygote-backed dag-processor and one stock dag-processor parse identical folders side by side for
the whole module; each test applies one fault to the zygote for a window and compares the zygote
side's parses in that window with stock's in the same window. Under every fault the zygote side must
parse at least half as fast as stock, its DagProcessorJob heartbeat must stay younger than
``[dag_processor] health_check_threshold`` (what ``/health`` and the liveness probe check), and every
file must be parsed again (no parse lost). After the fault the zygote is used again without a restart.
The tests run in file order: the first one starts the zygote late on purpose.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest
from fault_home import FaultHome
from processes import HEALTH_CHECK_THRESHOLD, DagProcessor, HealthSampler, forker_pid, wait_quiet
from side_by_side import SideBySide, Window
from zygote_harness import ZygoteProcess, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(360)]

FILES = 12


@dataclass
class Stalls:
    side: SideBySide
    root: Path
    zygote: ZygoteProcess | None = None

    def ensure_zygote(self) -> ZygoteProcess:
        """Started once for the module, kept (and stopped at the end) even if it is slow to get ready."""
        if self.zygote is None:
            self.zygote = ZygoteProcess.start(self.side.zygote_home.env, self.root / "zygote.log", wait=False)
        self.zygote.wait_healthy(240)
        return self.zygote

    def wait_remote(self, count: int = 4, timeout: float = 90.0) -> None:
        """The zygote side parses through the zygote again (no restart of the dag-processor)."""
        since = time.time()
        processor = self.side.zygote_side
        wait_for(lambda: processor.remote_parses(since) >= count, timeout, "parses through the zygote", interval=0.2)


@pytest.fixture(scope="module")
def stalls(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Iterator[Stalls]:
    root = tmp_path_factory.mktemp("stalls")
    zygote_home = FaultHome.create(root / "zygote", migrated_db, os.environ.copy())
    stock_home = FaultHome.create(root / "stock", migrated_db, os.environ.copy())
    files = zygote_home.write_marker_dags(FILES)
    stock_home.write_marker_dags(FILES)
    stock_side = DagProcessor.start(stock_home, stock=True)
    zygote_side = DagProcessor.start(zygote_home)
    state = None
    try:
        with HealthSampler(zygote_home) as health:
            side = SideBySide(zygote_home, stock_home, zygote_side, stock_side, health, files)
            state = Stalls(side, root)
            yield state
    finally:
        zygote_side.stop()
        stock_side.stop()
        if state is not None and state.zygote is not None:
            state.zygote.stop()


def _window(seconds: float) -> tuple[float, float]:
    start = time.time()
    wait_quiet(seconds)
    return start, time.time()


def _assert_absorbed(stalls: Stalls, window: Window) -> None:
    home = stalls.side.zygote_home
    assert stalls.side.zygote_side.alive(), stalls.side.zygote_side.log_text()[-3000:]
    assert window.worst_heartbeat_age < HEALTH_CHECK_THRESHOLD, window
    assert window.zygote_rate >= 0.5 * window.stock_rate, window
    started = datetime.fromtimestamp(window.start, timezone.utc)

    def every_dag_reparsed() -> bool:
        parsed = home.last_parsed()
        return len(parsed) == FILES and all(at > started for at in parsed.values())

    wait_for(every_dag_reparsed, 60, "every DAG's last_parsed_time to pass the window's start", interval=0.5)


def test_zygote_not_started_yet(stalls: Stalls) -> None:
    side = stalls.side
    side.stock_side.wait_parses(FILES, 180)
    side.zygote_side.wait_parses(FILES, 180)
    start, end = _window(20)
    _assert_absorbed(stalls, side.measure("zygote_not_started", start, end))
    stalls.ensure_zygote()
    stalls.wait_remote()


def test_healthy_zygote_keeps_pace_with_stock(stalls: Stalls) -> None:
    """The reference figure for the faults below: a healthy zygote over a window of its own."""
    stalls.ensure_zygote()
    stalls.wait_remote()
    start, end = _window(15)
    window = stalls.side.measure("healthy", start, end)
    assert stalls.side.zygote_side.local_parses(start) == 0  # all through the zygote
    _assert_absorbed(stalls, window)


def _assert_absorbed_while_stopped(stalls: Stalls, pid: int, seconds: float, name: str) -> None:
    """SIGSTOP ``pid`` (a process of the zygote this module started) for a window, then judge that window."""
    os.kill(pid, signal.SIGSTOP)
    try:
        start, end = _window(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
    _assert_absorbed(stalls, stalls.side.measure(name, start, end))
    stalls.wait_remote()


def test_forker_sigstopped_40s(stalls: Stalls) -> None:
    zygote = stalls.ensure_zygote()
    stalls.wait_remote()
    _assert_absorbed_while_stopped(stalls, forker_pid(zygote), 40, "forker_sigstopped_40s")


def test_gateway_sigstopped_20s(stalls: Stalls) -> None:
    zygote = stalls.ensure_zygote()
    stalls.wait_remote()
    gateway = zygote.status(timeout=10)["gateway"]["pid"]
    assert gateway == zygote.popen.pid  # `serve` execs the gateway: the process this test started
    _assert_absorbed_while_stopped(stalls, gateway, 20, "gateway_sigstopped_20s")


def test_forker_crash_looping_30s(stalls: Stalls) -> None:
    zygote = stalls.ensure_zygote()
    stalls.wait_remote()
    gateway = psutil.Process(zygote.popen.pid)
    killed: set[int] = set()
    start = time.time()
    while time.time() - start < 30:
        for child in gateway.children():  # forker generations; their workers die with them (PDEATHSIG)
            if child.pid not in killed:
                os.kill(child.pid, signal.SIGKILL)
                killed.add(child.pid)
        time.sleep(0.2)
    end = time.time()
    assert len(killed) >= 2, killed  # the gateway restarted its forker at least once: a crash loop
    _assert_absorbed(stalls, stalls.side.measure("forker_crash_looping_30s", start, end))
    zygote.wait_healthy(120)
    stalls.wait_remote()
