"""The warm pool through a real zygote: requests take pre-forked workers, which become the session's child
at assignment, are replaced when the forker's heap changes, and never outlive their forker.

One zygote serves the module (start-up costs seconds); the test that kills its forker runs last.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from dagfiles import HEADER, simple_dag, write
from hostile_support import assert_ledger_balanced
from preload_support import (
    LIBS,
    ParseStream,
    connected,
    dags_folder,
    importing_dag,
    parse,
    preload_of,
    wait_for_state,
    zygote_env,
)
from zygote_harness import ParseDriver, ZygoteProcess, pid_alive, wait_for

pytestmark = pytest.mark.e2e

POOL = 2


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Iterator[ZygoteProcess]:
    env = zygote_env(approved_modules="zt_slow,zt_eager", warm_workers=str(POOL))
    process = ZygoteProcess.start(env, tmp_path_factory.mktemp("pool-zygote") / "zygote.log")
    yield process
    process.stop()


def full_pool(zygote: ZygoteProcess, not_among: Collection[int] = ()) -> dict[str, Any]:
    """The pool's status once it holds ``POOL`` idle workers, none of them in ``not_among``."""

    def full() -> dict[str, Any] | None:
        pool: dict[str, Any] = zygote.status()["forker"]["pool"]
        return pool if pool["idle"] == POOL and not set(pool["pids"]) & set(not_among) else None

    result: dict[str, Any] = wait_for(full, 60, "a full warm pool", 0.2)
    return result


def test_a_request_takes_a_pool_worker_which_becomes_the_sessions_child(
    zygote: ZygoteProcess, driver: ParseDriver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    idle = set(full_pool(zygote)["pids"])
    assert zygote.status()["forker"]["pooled"] == POOL
    # The session is opened after its pool workers were forked: what it carries is applied at assignment.
    monkeypatch.setenv("ZT_POOL_MARK", "from_the_session")
    seen = tmp_path / "seen.json"
    body = (
        "import json, os, sys\n"
        f"json.dump({{'cwd': os.getcwd(), 'libs': {str(LIBS)!r} in sys.path, 'pid': os.getpid()}},"
        f" open({str(seen)!r}, 'w'))\n"
    )
    dag = (
        HEADER
        + "import os\nfrom airflow.providers.standard.operators.empty import EmptyOperator\n"
        + "with DAG('pool_' + os.environ.get('ZT_POOL_MARK', 'forker_env'), schedule=None) as dag:\n"
        + "    EmptyOperator(task_id='t')\n"
    )
    dags = dags_folder("warm-pool")
    path = write(dags, "pool_child.py", dag + body)
    with connected(zygote) as connection:
        parsed = parse(driver, connection, path)
    assert parsed.entry.outcome == "exited", parsed.entry
    assert parsed.dag_ids == ["pool_from_the_session"], parsed.import_errors
    assert parsed.entry.stats["pooled"] is True
    worker = json.loads(seen.read_text())
    assert worker["pid"] in idle
    assert worker["cwd"] == os.getcwd()  # the client's, as a stock child of the dag-processor
    assert worker["libs"] is True
    refilled = full_pool(zygote, not_among={worker["pid"]})
    assert refilled["handed_out"] >= 1
    assert refilled["uss"] > 0


def test_a_promotion_replaces_the_idle_workers_so_none_is_handed_out_stale(
    zygote: ZygoteProcess, driver: ParseDriver
) -> None:
    before = full_pool(zygote)
    dags = dags_folder("warm-pool")
    with connected(zygote) as connection:
        first = parse(driver, connection, importing_dag(dags, "pool_slow_first", "zt_slow"))
        assert "zt_slow" in first.imports
        assert wait_for_state(zygote, "zt_slow", {"loaded", "rejected"})["state"] == "loaded"
        after = full_pool(zygote, not_among=set(before["pids"]))
        assert after["evicted"] >= before["evicted"] + POOL
        second = parse(driver, connection, importing_dag(dags, "pool_slow_second", "zt_slow"))
    assert second.entry.stats["pooled"] is True
    assert "zt_slow" not in second.imports  # the worker was forked from the heap that holds it


def forker_children(zygote: ZygoteProcess) -> set[int]:
    """The forker's children, zombies included (a zombie is a child nobody reaped)."""
    return {child.pid for child in psutil.Process(zygote.status()["forker"]["pid"]).children()}


def settled(zygote: ZygoteProcess, module: str) -> bool:
    return preload_of(zygote).get(module, {}).get("state") in ("loaded", "rejected")


def keep_parsing(stream: ParseStream, until: Callable[[], bool], timeout: float, what: str) -> None:
    """Keep ``stream`` full until ``until()`` (asked every 25 rounds: it may ask for status)."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        for _ in range(25):
            stream.pump()


def test_an_idle_worker_killed_from_outside_is_reaped_and_replaced_and_every_request_ends_once(
    zygote: ZygoteProcess, driver: ParseDriver
) -> None:
    """Killed while idle: reaped as lost (or met dead at hand-over), never handed a request that then hangs."""
    victim = full_pool(zygote)["pids"][0]
    os.kill(victim, signal.SIGKILL)
    path = write(dags_folder("warm-pool"), "pool_plain.py", simple_dag("pool_plain"))
    with connected(zygote) as connection:
        wait_for(lambda: connection.available, 60, "a ready session")
        stream = ParseStream(driver, connection, path, width=POOL + 1)  # more at once than the pool holds
        stream.pump_until(lambda: stream.started >= 2 * POOL + 2, 90, "the parses to start")
        stream.finish_all()
        assert_ledger_balanced(connection.ledger, requests=stream.started)
    assert {(p.entry.outcome, tuple(p.dag_ids)) for p in stream.done} == {("exited", ("pool_plain",))}
    assert any(p.entry.stats["pooled"] for p in stream.done)
    full_pool(zygote, not_among={victim})
    wait_for(lambda: forker_children(zygote) == set(full_pool(zygote)["pids"]), 30, "only the pool's workers left")
    lost = zygote.events("pool.worker_lost") + zygote.events("pool.assign_failed")
    assert victim in {event["pid"] for event in lost}, lost


def test_a_promotion_while_requests_are_in_flight_ends_each_once_and_hands_out_no_stale_worker(
    zygote: ZygoteProcess, driver: ParseDriver
) -> None:
    dags = dags_folder("warm-pool")
    uses = importing_dag(dags, "pool_uses_eager", "zt_eager")
    with connected(zygote) as connection:
        wait_for(lambda: connection.available, 60, "a ready session")
        stream = ParseStream(driver, connection, uses, width=POOL + 1)  # the pool is emptied and refilled
        keep_parsing(stream, lambda: settled(zygote, "zt_eager"), 90, "zt_eager's promotion while parses run")
        stream.finish_all()
        promoted_at = len(stream.done)
        stream.pump_until(lambda: stream.started >= promoted_at + 2 * POOL, 90, "parses after the promotion")
        stream.finish_all()
        assert_ledger_balanced(connection.ledger, requests=stream.started)
    assert preload_of(zygote)["zt_eager"]["state"] == "loaded"
    assert all(p.entry.outcome == "exited" and p.dag_ids == ["pool_uses_eager"] for p in stream.done)
    after = stream.done[promoted_at:]
    assert any(p.entry.stats["pooled"] for p in after)
    assert not [p.entry.stats for p in after if "zt_eager" in p.imports]  # every worker held the new heap
    wait_for(lambda: forker_children(zygote) == set(full_pool(zygote)["pids"]), 30, "only the pool's workers left")


def test_pool_workers_never_outlive_their_generation(zygote: ZygoteProcess) -> None:
    from zygote.client.control import request_reload

    def ended(pids: list[int], why: str) -> None:
        for pid in pids:
            wait_for(lambda pid=pid: not pid_alive(pid), 30, f"pool worker {pid} to end {why}")

    drained = full_pool(zygote)
    request_reload(zygote.settings)  # the old generation drains: its pool is killed and reaped
    ended(drained["pids"], "with the drained generation")
    pool = full_pool(zygote, not_among=set(drained["pids"]))
    forker = zygote.status()["forker"]["pid"]
    os.kill(forker, signal.SIGKILL)
    ended(pool["pids"], "with their killed forker")
    zygote.wait_healthy()
    full_pool(zygote, not_among=set(pool["pids"]))  # the next generation has its own pool
