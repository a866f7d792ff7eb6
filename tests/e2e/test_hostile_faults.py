"""The zygote's own processes killed with SIGKILL mid-request.

Forker killed: the request ends ``forker_lost`` (the worker and what it started die too) and the
gateway starts a new generation. Gateway killed: the client ends the request ``zygote_unavailable``
after its heartbeat timeout and, while the zygote is down, falls back per ``[zygote] fallback``; a
new zygote on the same socket (a container restart) serves the same client again. The tests run in
file order: the last ones replace the module's zygote.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagfiles import write
from hostile_support import (
    Hostile,
    HostileClient,
    assert_ledger_balanced,
    hostile_zygote,
    marked_pids,
    parse_request_frame,
)
from zygote_harness import ParseDriver, ZygoteProcess, pid_alive, settings_for, spawn_message, wait_for

from protocol import Input, Started

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    with hostile_zygote(tmp_path_factory.mktemp("faults"), "faults") as zygote:
        yield zygote


def _sleeper(hostile: Hostile, tmp_path: Path, name: str, child: bool = True) -> tuple[Path, Path, Path]:
    """A DAG file that (maybe) starts a child, notes the pids, then sleeps: (file, asleep marker, pid file)."""
    asleep, pids = tmp_path / f"{name}-asleep", tmp_path / f"{name}-pids"
    start = "subprocess.Popen(['sleep', '600']).pid" if child else "''"
    body = (
        "# airflow DAG\nimport os, subprocess, time\n"
        f"child = {start}\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child}}')\n"
        f"open({str(asleep)!r}, 'w').close()\n"
        "time.sleep(600)\n"
    )
    return write(hostile.dags, f"{name}.py", body), asleep, pids


def _pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()]


def test_forker_killed_mid_request(hostile: Hostile, conn: Any, driver: ParseDriver, tmp_path: Path) -> None:
    base = hostile.baseline()
    path, asleep, pids = _sleeper(hostile, tmp_path, "forker_victim")
    proc = driver.start_zygote(conn, path, hostile.dags)
    wait_for(asleep.exists, 30, "the worker to be asleep")
    os.kill(base.forker_pid, signal.SIGKILL)
    parsed = driver.finish(proc)
    assert parsed.exit_code == 1
    assert "parse ended without a result: forker_lost" in parsed.log_text
    assert_ledger_balanced(conn.ledger, requests=1)
    assert conn.ledger.entries[0].outcome == "forker_lost"
    wait_for(lambda: not any(pid_alive(pid) for pid in _pids(pids)), 20, "the worker and its child to die")
    assert hostile.zygote.wait_healthy(60)["forker"]["pid"] != base.forker_pid
    # The forker's pid changed: its descriptors are compared from here, the gateway's from before.
    hostile.assert_recovered(base, conn.ledger)
    after_restart = hostile.baseline()
    hostile.assert_recovered(after_restart, conn.ledger)


def test_gateway_killed_mid_request_then_restarted(
    hostile: Hostile, conn: Any, driver: ParseDriver, tmp_path: Path
) -> None:
    path, asleep, _ = _sleeper(hostile, tmp_path, "gateway_victim", child=False)
    proc = driver.start_zygote(conn, path, hostile.dags)
    wait_for(asleep.exists, 30, "the worker to be asleep")
    old = hostile.zygote
    forker = hostile.forker_pid()
    old.popen.send_signal(signal.SIGKILL)
    parsed = driver.finish(proc, timeout=30)  # ends at the client's heartbeat timeout
    assert parsed.exit_code == 1
    assert "parse ended without a result: zygote_unavailable" in parsed.log_text
    assert_ledger_balanced(conn.ledger, requests=1)
    assert conn.ledger.entries[0].outcome == "zygote_unavailable"
    wait_for(lambda: not marked_pids(hostile.mark), 20, "every process of the killed zygote to end")
    assert not pid_alive(forker)

    _fallbacks_while_down(hostile, driver)

    hostile.zygote = ZygoteProcess.start(old.env, old.log_path.with_name("zygote-restarted.log"))
    wait_for(lambda: conn.available, 30, "the same client to reconnect")
    base = hostile.baseline()
    again = driver.finish(driver.start_zygote(conn, hostile.canary_path, hostile.dags))
    assert again.exit_code == 0 and again.result is not None and again.result.serialized_dags
    hostile.assert_recovered(base, conn.ledger)


def _fallbacks_while_down(hostile: Hostile, driver: ParseDriver) -> None:
    """``[zygote] fallback``: ``fail`` fails the parse with a clear message, ``local`` parses here."""
    from zygote.client.manager import ZygoteDagFileProcessorManager

    for fallback in ("fail", "local"):
        settings = settings_for(hostile.zygote.env, fallback=fallback, connect_timeout=1.0)
        manager = ZygoteDagFileProcessorManager(max_runs=1, settings=settings)
        try:
            proc = manager._start_process(driver._kwargs(hostile.canary_path, hostile.dags, []))
            parsed = driver.finish(proc)
        finally:
            manager.end()
        [entry] = manager.ledger.entries
        assert entry.outcome == "zygote_unavailable"
        if fallback == "fail":
            assert parsed.exit_code == 1 and parsed.result is None
            assert "the zygote cannot take it now and [zygote] fallback is 'fail'" in parsed.log_text
        else:
            assert parsed.exit_code == 0 and parsed.result.serialized_dags, parsed.log_text[-2000:]
            assert not getattr(proc, "is_remote", False)


def test_gateway_killed_leaves_no_stray_of_a_worker(hostile: Hostile, tmp_path: Path) -> None:
    path, asleep, pids = _sleeper(hostile, tmp_path, "stray_victim")
    client = HostileClient(hostile.endpoint, "stray")
    client.hello()
    client.send(spawn_message("stray-1", path))
    client.expect(Started, request_id="stray-1")
    client.send(Input(id="stray-1", data=parse_request_frame(str(path), str(path.parent))))
    wait_for(asleep.exists, 30, "the worker to be asleep")
    hostile.zygote.popen.send_signal(signal.SIGKILL)
    client.close()
    worker, child = _pids(pids)
    try:
        wait_for(lambda: not pid_alive(worker), 20, "the worker to die")
        wait_for(lambda: not marked_pids(hostile.mark), 10, f"the worker's child {child} to be killed too")
    finally:
        for pid in marked_pids(hostile.mark):
            os.kill(pid, signal.SIGKILL)
