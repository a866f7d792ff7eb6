"""A worker's exit report, in a real forked process: it answers before the kernel tears the worker down.

The child stands in for a worker: real socketpairs, the worker's own ``_reporting`` wrapper, and an
``os._exit`` that first waits until the test lets it go (a teardown as slow as it takes). The report
with ``ending`` and EOF on every channel must reach the parent while the child still lives; a
process the target forks must not announce.
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Callable
from pathlib import Path

from protocol import CHANNELS, FrameBuffer, WorkerReport
from zygote.forker.measure import ModuleBaseline
from zygote.forker.worker import Assignment, ChannelPairs, _reporting

REPORT_WAIT_S = 30.0


def _fork_worker(target: Callable[[], None], bundle: str = "") -> tuple[int, ChannelPairs, int]:
    """The child's pid, its pairs, and the pipe end that lets its ``os._exit`` proceed (close it)."""
    pairs = ChannelPairs.create()
    gate_r, gate_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        for sock in pairs.parent.values():
            sock.close()
        os.close(gate_w)
        real_exit = os._exit

        def slow_teardown(status: int) -> None:
            os.read(gate_r, 1)  # EOF once the test closed its end (or died)
            real_exit(status)

        os._exit = slow_teardown  # type: ignore[assignment]
        channels = [pairs.child[name].dup() for name in CHANNELS]
        run = _reporting(lambda: Assignment(target, bundle), pairs.child["report"], channels, ModuleBaseline())
        try:
            run()
        finally:
            real_exit(99)  # not reached: the target exits
    os.close(gate_r)
    pairs.close_child_ends()
    return pid, pairs, gate_w


def _reports(pairs: ChannelPairs, until: float) -> list[WorkerReport]:
    """Every report frame until EOF on the report socket or ``until``."""
    sock, buffer, reports = pairs.parent["report"], FrameBuffer(), []
    while time.monotonic() < until:
        ready, _, _ = select.select([sock], [], [], max(0.0, until - time.monotonic()))
        if not ready:
            break
        data = sock.recv(1 << 16)
        if not data:
            break
        reports += [m for m in buffer.feed(data) if isinstance(m, WorkerReport)]
        if reports:
            break
    return reports


def _assert_channels_at_eof(pairs: ChannelPairs) -> None:
    """Every channel reads EOF within a second (``TimeoutError`` otherwise)."""
    for name in CHANNELS:
        sock = pairs.parent[name]
        sock.settimeout(1.0)
        while sock.recv(1 << 16):
            pass


def test_the_exit_report_and_channel_eof_come_before_the_teardown(tmp_path: Path) -> None:
    """Also: the bundle's own modules (a helper next to the DAG files) are no preload candidates."""
    bundle = tmp_path / "dags"
    bundle.mkdir()
    (bundle / "team_helpers_for_exit_test.py").write_text("VALUE = 1\n")

    def target() -> None:
        sys.path.insert(0, str(bundle))
        import wave  # noqa: F401

        import team_helpers_for_exit_test  # noqa: F401

        print("parsed", flush=True)
        os._exit(3)

    pid, pairs, gate = _fork_worker(target, str(bundle))
    try:
        [report] = _reports(pairs, time.monotonic() + REPORT_WAIT_S)
        assert "report_error" not in report.ending, report.ending
        assert "wave" in report.modules and "team_helpers_for_exit_test" not in report.modules
        assert report.ending["exit_code"] == 3
        assert report.ending["cpu_user_s"] >= 0 and report.ending["peak_rss"] > 0
        assert report.memory["uss"] > 0 and "start_monotonic" in report.memory
        _assert_channels_at_eof(pairs)
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # still tearing down: the answer did not wait for it
    finally:
        os.close(gate)
        pairs.close_all()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3


def test_a_process_the_parse_forks_never_announces_the_workers_exit() -> None:
    def target() -> None:
        child = os.fork()
        if child == 0:
            os._exit(0)  # inherits the wrapped os._exit and the channels
        os.waitpid(child, 0)
        os._exit(4)

    pid, pairs, gate = _fork_worker(target)
    os.close(gate)  # the grandchild's exit must not wait on the test
    try:
        reports = _reports(pairs, time.monotonic() + REPORT_WAIT_S)
        assert [r.ending["exit_code"] for r in reports] == [4]
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 4
    finally:
        pairs.close_all()
