"""Lazy, verified preloading through a real zygote, with libraries made to misbehave at import.

One zygote serves the whole module (starting one costs seconds); each test uses its own
libraries, so the tests do not depend on one another's order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from preload_support import (
    Parsed,
    connected,
    dags_folder,
    importing_dag,
    parse,
    preload_of,
    probes_started_with,
    wait_for_state,
    zygote_env,
)
from zygote_harness import ParseDriver, ZygoteProcess

pytestmark = pytest.mark.e2e

APPROVED = (
    "zt_slow, zt_thread, zt_socket, zt_gc, zt_child, zt_raises, zt_forker_fails, zt_half_imported, zt_eager, "
    "zt_never_imported"
)
"""In this order the probe at start imports zt_half_imported before zt_eager (configured order)."""
UNSAFE = {
    "zt_thread": "left 1 thread(s) running",
    "zt_socket": "file descriptor(s) open: socket:[",
    "zt_gc": "changed the garbage collector's settings",
    "zt_child": "started 1 child process(es)",
}
"""Libraries that leave something behind at import, and the reason each must be rejected with."""
SLOW_IMPORT_S = 0.4
"""What ``zt_slow`` sleeps at import."""


@pytest.fixture(scope="module")
def lib_dags() -> Path:
    return dags_folder("preload-lazy")


@pytest.fixture(scope="module")
def state_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("preload-state") / "preload.json"


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory, state_file: Path, migrated_db: Path) -> Iterator[ZygoteProcess]:
    env = zygote_env(
        approved_modules=APPROVED,
        preload_modules="zt_eager, zt_raises, zt_half_imported",
        preload_state_file=str(state_file),
    )
    process = ZygoteProcess.start(env, tmp_path_factory.mktemp("preload-zygote") / "zygote.log")
    yield process
    process.stop()


@pytest.fixture
def connection(zygote: ZygoteProcess) -> Iterator[Any]:
    with connected(zygote) as conn:
        yield conn


def parsed_ok(parsed: Parsed, dag_id: str) -> Parsed:
    assert parsed.entry.outcome == "exited", parsed.entry
    assert parsed.entry.exit_code == 0
    assert parsed.dag_ids == [dag_id], parsed.import_errors
    return parsed


def test_eager_preloads_are_verified_at_start(zygote: ZygoteProcess) -> None:
    preload = preload_of(zygote)
    assert preload["zt_eager"]["state"] == "loaded"
    assert preload["zt_eager"]["import_s"] >= 0.04
    assert preload["zt_raises"]["state"] == "rejected"
    assert "RuntimeError: zt_raises refuses to be imported" in preload["zt_raises"]["reason"]
    assert preload["zt_never_imported"]["state"] == "not_seen"
    # A failed import that left a thread behind is rejected for both, and does not taint the
    # verdict on the next module probed in the same child.
    assert preload["zt_half_imported"]["state"] == "rejected"
    assert "ImportError: zt_half_imported gave up half way" in preload["zt_half_imported"]["reason"]
    assert "thread" in preload["zt_half_imported"]["reason"]
    # Airflow's own lazy imports, learned from the warm-up parse, are in the frozen heap.
    assert preload["airflow.providers.standard.operators.bash"]["state"] == "loaded"


def test_slow_library_is_loaded_after_one_parse_and_not_paid_again(
    zygote: ZygoteProcess, lib_dags: Path, driver: ParseDriver, connection: Any, state_file: Path
) -> None:
    before = zygote.status()["forker"]
    first = parsed_ok(parse(driver, connection, importing_dag(lib_dags, "slow_first", "zt_slow")), "slow_first")
    assert first.imports["zt_slow"] >= SLOW_IMPORT_S
    assert "zt_slow.helpers" in first.imports  # submodules are reported, however fast

    record = wait_for_state(zygote, "zt_slow", {"loaded", "rejected"})
    assert record["state"] == "loaded", record
    assert record["import_s"] >= SLOW_IMPORT_S
    assert preload_of(zygote)["zt_slow.helpers"]["state"] == "loaded"
    after = zygote.status()["forker"]
    assert after["threads"] == 1
    assert after["frozen_objects"] > before["frozen_objects"]
    assert {"zt_slow", "zt_slow.helpers"} <= set(json.loads(state_file.read_text())["loaded"])

    second = parsed_ok(parse(driver, connection, importing_dag(lib_dags, "slow_second", "zt_slow")), "slow_second")
    assert "zt_slow" not in second.imports  # the worker found it in the forker's heap
    assert "zt_slow.helpers" not in second.imports


def test_libraries_that_leave_something_behind_are_rejected_once(
    zygote: ZygoteProcess, lib_dags: Path, driver: ParseDriver, connection: Any
) -> None:
    path = importing_dag(lib_dags, "unsafe_imports", *UNSAFE)
    parsed_ok(parse(driver, connection, path), "unsafe_imports")

    records = {name: wait_for_state(zygote, name, {"loaded", "rejected"}) for name in UNSAFE}
    for name, reason in UNSAFE.items():
        assert records[name]["state"] == "rejected", (name, records[name])
        assert reason in records[name]["reason"], (name, records[name])
    forker = zygote.status()["forker"]
    assert forker["threads"] == 1
    children = {child.pid for child in psutil.Process(forker["pid"]).children()}
    assert children <= set(zygote.status()["forker"]["pool"]["pids"])  # the probe took its child along

    again = parsed_ok(parse(driver, connection, path), "unsafe_imports")
    assert set(UNSAFE) <= set(again.imports)  # workers keep importing them
    # The forker reads a worker's report before its ``exited``: a retry would be under way now.
    preload = preload_of(zygote)
    assert {name: preload[name] for name in UNSAFE} == records
    assert [probes_started_with(zygote, name) for name in UNSAFE] == [1] * len(UNSAFE)


def test_library_failing_in_the_forker_is_rejected_and_the_forker_stays_healthy(
    zygote: ZygoteProcess, lib_dags: Path, driver: ParseDriver, connection: Any
) -> None:
    path = importing_dag(lib_dags, "forker_fails", "zt_forker_fails")
    parsed_ok(parse(driver, connection, path), "forker_fails")

    record = wait_for_state(zygote, "zt_forker_fails", {"loaded", "rejected"})
    assert record["state"] == "rejected"
    assert "import failed in the forker: RuntimeError: zt_forker_fails" in record["reason"]
    assert "zt_forker_fails.py:" in record["reason"]  # where it was raised
    status = zygote.status()
    assert status["healthy"]
    assert status["forker"]["threads"] == 1
    again = parsed_ok(parse(driver, connection, path), "forker_fails")
    assert "zt_forker_fails" in again.imports


def test_raising_library_is_never_loaded(
    zygote: ZygoteProcess, lib_dags: Path, driver: ParseDriver, connection: Any
) -> None:
    parsed = parse(driver, connection, importing_dag(lib_dags, "raises", "zt_raises"))
    assert parsed.entry.outcome == "exited"
    assert parsed.dag_ids == []
    assert "zt_raises refuses to be imported" in next(iter(parsed.import_errors.values()))
    assert preload_of(zygote)["zt_raises"]["state"] == "rejected"


def test_unapproved_module_never_enters_the_forker(
    zygote: ZygoteProcess, lib_dags: Path, driver: ParseDriver, connection: Any
) -> None:
    path = importing_dag(lib_dags, "unvetted", "zt_unvetted")
    first = parsed_ok(parse(driver, connection, path), "unvetted")
    second = parsed_ok(parse(driver, connection, path), "unvetted")
    # Every worker imports it again: the forker does not have it.
    assert first.imports["zt_unvetted"] >= 0.04
    assert second.imports["zt_unvetted"] >= 0.04
    status = zygote.status()
    assert "zt_unvetted" not in status["preload"]
    assert status["import_costs"]["zt_unvetted"] >= 0.08  # advice: what approving it would save


def test_forker_and_worker_memory_is_reported(
    zygote: ZygoteProcess, lib_dags: Path, driver: ParseDriver, connection: Any
) -> None:
    parsed = parsed_ok(parse(driver, connection, importing_dag(lib_dags, "memory", "zt_eager")), "memory")
    assert parsed.entry.stats["peak_uss"] > 0
    assert parsed.entry.stats["peak_pss"] >= parsed.entry.stats["peak_uss"]
    forker = zygote.status()["forker"]
    assert 0 < forker["uss"] <= forker["rss"]
