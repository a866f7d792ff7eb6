"""The warm pool through a real zygote: requests take pre-forked workers, which became the session's child
before the request (ADR 0006), are replaced when the session or the forker's heap changes, and never
outlive their forker.

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

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]  # a loaded machine starts the zygote in the first test

POOL = 2


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Iterator[ZygoteProcess]:
    env = zygote_env(approved_modules="zt_slow,zt_eager", warm_workers=str(POOL))
    process = ZygoteProcess.start(env, tmp_path_factory.mktemp("pool-zygote") / "zygote.log")
    yield process
    process.stop()


def full_pool(zygote: ZygoteProcess, not_among: Collection[int] = (), specialised: bool = False) -> dict[str, Any]:
    """The pool's status once it holds ``POOL`` idle workers, none of them in ``not_among``; with
    ``specialised``, all set up for the latest spawn's session and no promotion pending (one would
    evict them: the imports of a first parse are promoted)."""

    def full() -> dict[str, Any] | None:
        status = zygote.status()
        pool: dict[str, Any] = status["forker"]["pool"]
        ready = pool["idle"] == POOL and not set(pool["pids"]) & set(not_among)
        if not ready or not specialised:
            return pool if ready else None
        promoting = status["forker"]["promoting"] or {"pending", "probing"} & {
            record["state"] for record in status["preload"].values()
        }
        return pool if pool["specialised"] == POOL and not promoting else None

    result: dict[str, Any] = wait_for(full, 60, "a full warm pool", 0.2)
    return result


def session_dag(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A DAG whose id comes from the session's environment, and where its worker notes what it saw."""
    seen = tmp_path / f"{name}.json"
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
    return write(dags_folder("warm-pool"), f"{name}.py", dag + body), seen


def parse_as_session(driver: ParseDriver, zygote: ZygoteProcess, path: Path, seen: Path, mark: str) -> dict[str, Any]:
    """Parse ``path`` in a fresh session whose environment holds ``mark``; what its worker saw."""
    os.environ["ZT_POOL_MARK"] = mark
    try:
        with connected(zygote) as connection:
            parsed = parse(driver, connection, path)
    finally:
        del os.environ["ZT_POOL_MARK"]
    assert parsed.entry.outcome == "exited", parsed.entry
    assert parsed.dag_ids == [f"pool_{mark}"], parsed.import_errors
    worker: dict[str, Any] = json.loads(seen.read_text())
    assert worker["cwd"] == os.getcwd()  # the client's, as a stock child of the dag-processor
    assert worker["libs"] is True
    worker["pooled"] = parsed.entry.stats["pooled"]
    return worker


def test_pool_workers_take_on_the_latest_sessions_process_before_their_request(
    zygote: ZygoteProcess, driver: ParseDriver, tmp_path: Path
) -> None:
    """Forked before any session: unspecialised, set up at assignment. Then specialised for the session
    the latest spawn came from, ahead of its requests; a session with another environment re-specialises."""
    unspecialised = set(full_pool(zygote)["pids"])
    assert zygote.status()["forker"]["pooled"] == POOL
    path, seen = session_dag(tmp_path, "pool_child")
    first = parse_as_session(driver, zygote, path, seen, "first_session")
    assert first["pooled"] is True and first["pid"] in unspecialised
    specialised = full_pool(zygote, not_among={first["pid"]}, specialised=True)
    assert specialised["specialisations"] == 1 and specialised["handed_out"] >= 1 and specialised["uss"] > 0
    again = parse_as_session(driver, zygote, path, seen, "first_session")
    assert again["pooled"] is True and again["pid"] in specialised["pids"]
    other = parse_as_session(driver, zygote, path, seen, "other_session")  # another environment: a fork
    assert other["pooled"] is False
    respecialised = full_pool(zygote, not_among=set(specialised["pids"]), specialised=True)
    assert respecialised["specialisations"] == 2
    assert respecialised["evicted"] >= specialised["evicted"] + POOL
    last = parse_as_session(driver, zygote, path, seen, "other_session")
    assert last["pooled"] is True and last["pid"] in respecialised["pids"]


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
