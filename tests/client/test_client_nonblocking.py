"""The dag-processor's thread never waits on the zygote, and a refusal never loses a parse.

Real zygotes, real forks, real stalls (SIGSTOP of the forker or the gateway, a zygote still
starting, fewer zygote workers than parse processes). The manager's loop is played by
:func:`run_batch`: it starts up to ``parallelism`` parses exactly as ``_start_new_processes``
does (``start_remote``, falling back per ``[zygote] fallback``) and services the selector until
every parse is done, timing each start.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from dagfiles import simple_dag, write
from zygote_harness import ParseDriver, ZygoteProcess, serialized, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

START_BOUND_S = 0.25
"""Generous for a loaded 2-core machine; measured starts are a few ms (see the report)."""


@dataclasses.dataclass
class Batch:
    wall_s: float
    starts_s: list[float]
    outcomes: list[Any]


def run_batch(connection: Any, driver: ParseDriver, files: list[Path], bundle: Path, parallelism: int) -> Batch:
    from airflow.dag_processing.processor import DagFileProcessorProcess

    from zygote.client.connection import ZygoteUnavailable
    from zygote.client.process import ZygoteDagFileProcessorProcess

    queue, running, outcomes, starts = list(files), [], [], []
    began = time.monotonic()
    while queue or running:
        while queue and len(running) < parallelism:
            kwargs = driver._kwargs(queue.pop(0), bundle, [])
            started = time.monotonic()
            try:
                proc = ZygoteDagFileProcessorProcess.start_remote(connection=connection, timeout=60.0, **kwargs)
                starts.append(time.monotonic() - started)
            except ZygoteUnavailable:
                starts.append(time.monotonic() - started)  # the decision, not Airflow's own fork
                proc = DagFileProcessorProcess.start(**kwargs)
            running.append(proc)
        driver.service(0.05)
        for proc in [p for p in running if p.is_ready]:
            running.remove(proc)
            proc.close()
            outcomes.append(proc)
        assert time.monotonic() - began < 120, "the batch did not finish"
    return Batch(time.monotonic() - began, starts, outcomes)


def _files(dags: Path, prefix: str, count: int) -> list[Path]:
    return [write(dags, f"{prefix}_{index}.py", simple_dag(f"{prefix}_{index}")) for index in range(count)]


def _connect(zygote: ZygoteProcess, **overrides: Any) -> Any:
    from zygote.client.connection import ZygoteConnection
    from zygote.client.ledger import Ledger

    settings = dataclasses.replace(zygote.settings, **{"fallback": "local", "spawn_timeout": 2.0, **overrides})
    return ZygoteConnection(settings, Ledger(window=None))


def _assert_all_parsed(batch: Batch, count: int) -> None:
    assert len(batch.outcomes) == count
    for proc in batch.outcomes:
        assert proc._exit_code == 0, proc.dag_file_rel_path
        assert proc.parsing_result is not None and len(proc.parsing_result.serialized_dags) == 1


@contextmanager
def _stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_refusal_after_create_process_returned_is_parsed_locally(
    zygote: ZygoteProcess, driver: ParseDriver, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    path = write(outside, "outside_dag.py", simple_dag("parsed_here"))
    stock = driver.finish(driver.start_stock(path, outside))
    connection = _connect(zygote)
    try:
        wait_for(lambda: connection.available, 60, "the client to connect")
        batch = run_batch(connection, driver, [path], outside, parallelism=1)
        _assert_all_parsed(batch, 1)
        [proc] = batch.outcomes
        assert serialized(proc.parsing_result) == serialized(stock.result)
        assert proc.pid != 0 and not proc.is_remote  # a local child on the channels start_remote made
        [entry] = connection.ledger.entries
        assert entry.outcome == "rejected_path" and str(path) in entry.detail
        assert max(batch.starts_s) < START_BOUND_S
        assert not connection.ledger.open_ids
    finally:
        connection.close()


def _forker_pid(zygote: ZygoteProcess) -> int:
    pid: int = wait_for(lambda: zygote.status(timeout=5.0)["forker"]["pid"], 60, "the forker's pid")
    return pid


@pytest.mark.parametrize("stall", ["forker_stopped", "gateway_stopped"])
def test_a_stalled_zygote_never_blocks_the_manager_and_every_file_is_parsed(
    stall: str, zygote_factory: Any, inproc_env: dict[str, str], dags: Path, driver: ParseDriver
) -> None:
    zygote = zygote_factory(inproc_env)
    connection = _connect(zygote)
    try:
        wait_for(lambda: connection.available, 60, "the client to connect")
        healthy = run_batch(connection, driver, _files(dags, "healthy", 6), dags, parallelism=2)
        _assert_all_parsed(healthy, 6)
        victim = _forker_pid(zygote) if stall == "forker_stopped" else zygote.popen.pid
        with _stopped(victim):
            stalled = run_batch(connection, driver, _files(dags, "stalled", 6), dags, parallelism=2)
        _assert_all_parsed(stalled, 6)
        print(
            f"{stall}: healthy {healthy.wall_s:.2f} s, stalled {stalled.wall_s:.2f} s, "
            f"slowest start {max(stalled.starts_s) * 1000:.1f} ms"
        )
        assert max(healthy.starts_s + stalled.starts_s) < START_BOUND_S
        # At most two waits for the stalled zygote (the first request, then one probe a couple of
        # heartbeats later); local children fork from this process, slower than warm pool workers.
        assert stalled.wall_s <= 2 * healthy.wall_s + 2 * connection.settings.spawn_timeout
        assert not connection.ledger.open_ids
    finally:
        connection.close()


def test_a_zygote_still_starting_costs_the_manager_nothing(
    zygote_factory: Any, inproc_env: dict[str, str], dags: Path, driver: ParseDriver, tmp_path: Path
) -> None:
    files = _files(dags, "early", 4)
    zygote = ZygoteProcess.start(inproc_env, tmp_path / "starting.log", wait=False)
    try:
        connection = _connect(zygote, connect_timeout=0.5)
        try:
            batch = run_batch(connection, driver, files, dags, parallelism=2)
            _assert_all_parsed(batch, 4)
            assert max(batch.starts_s[1:]) < START_BOUND_S  # only the very first may wait for a handshake
            zygote.wait_healthy()
            wait_for(lambda: connection.available, 60, "the client to connect")
            again = run_batch(connection, driver, files, dags, parallelism=2)
            _assert_all_parsed(again, 4)
            assert connection.ledger.counts().get("exited", 0) >= 1  # the zygote is used once it is up
        finally:
            connection.close()
    finally:
        zygote.stop()


def test_more_parse_processes_than_zygote_workers_never_blocks_the_manager(
    zygote_factory: Any, inproc_env: dict[str, str], dags: Path, driver: ParseDriver
) -> None:
    zygote = zygote_factory(inproc_env, AIRFLOW__ZYGOTE__MAX_WORKERS="1")
    connection = _connect(zygote)
    try:
        wait_for(lambda: connection.available, 60, "the client to connect")
        batch = run_batch(connection, driver, _files(dags, "crowded", 8), dags, parallelism=4)
        _assert_all_parsed(batch, 8)
        assert max(batch.starts_s) < START_BOUND_S
        assert not connection.ledger.open_ids
    finally:
        connection.close()
