"""The warm pool through a real zygote: requests take pre-forked workers, which become the session's child
at assignment, are replaced when the forker's heap changes, and never outlive their forker.

One zygote serves the module (start-up costs seconds); the test that kills its forker runs last.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pytest
from dagfiles import HEADER, write
from preload_support import LIBS, connected, dags_folder, importing_dag, parse, wait_for_state, zygote_env
from zygote_harness import ParseDriver, ZygoteProcess, pid_alive, wait_for

pytestmark = pytest.mark.e2e

POOL = 2


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Iterator[ZygoteProcess]:
    env = zygote_env(approved_modules="zt_slow", warm_workers=str(POOL))
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
