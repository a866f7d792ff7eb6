"""Libraries that leave a thread in the forker never make a generation retire in a loop.

A module that passes its probe but starts a thread in the forker retires that generation: the
probe cannot see it (the module behaves differently in the forker), so the forker checks its own
threads after every promotion; the module is rejected and remembered in the state file, the
generation stops forking and is replaced, and parses keep being served.

A module that starts a thread in the parent at every fork (a Python ``os.register_at_fork`` hook
or a C ``pthread_atfork`` handler) is caught by its probe's test fork instead, before it reaches
the forker: with a warm pool refilling, the generation serves on and its innocent neighbours in
the round are loaded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from preload_support import connected, dags_folder, importing_dag, parse, preload_of, zygote_env
from zygote_harness import ParseDriver, ZygoteProcess, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]  # generations restart: slow on a loaded machine


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "preload.json"


@pytest.fixture
def zygote(tmp_path: Path, state_file: Path, migrated_db: Path) -> Iterator[ZygoteProcess]:
    env = zygote_env(approved_modules="zt_forker_thread", preload_state_file=str(state_file))
    process = ZygoteProcess.start(env, tmp_path / "zygote.log")
    yield process
    process.stop()


def _healthy_generation(zygote: ZygoteProcess, after: int) -> dict[str, Any] | None:
    status = zygote.status()
    forker = status["forker"]
    return status if status["healthy"] and forker["generation"] > after and forker["threads"] == 1 else None


def test_thread_started_in_the_forker_retires_the_generation(
    zygote: ZygoteProcess, driver: ParseDriver, state_file: Path
) -> None:
    dags = dags_folder("preload-retire")
    first_generation = zygote.status()["forker"]["generation"]
    with connected(zygote) as connection:
        parsed = parse(driver, connection, importing_dag(dags, "retire_first", "zt_forker_thread"))
        assert parsed.entry.outcome == "exited"

        status = wait_for(lambda: _healthy_generation(zygote, first_generation), 60, "a new generation")
        record = status["preload"]["zt_forker_thread"]
        assert record["state"] == "rejected"
        assert "when imported in the forker (not in its probe)" in record["reason"]
        assert "remembered" in record["reason"]  # the new generation learned it from the state file
        assert record["kind"] == "forker_thread"
        assert json.loads(state_file.read_text())["rejected"]["zt_forker_thread"]["kind"] == "forker_thread"
        assert [event["generation"] for event in zygote.events("forker.retired")] == [first_generation]

        again = parse(driver, connection, importing_dag(dags, "retire_again", "zt_forker_thread"))
        assert again.entry.outcome == "exited" and again.dag_ids == ["retire_again"]
        assert preload_of(zygote)["zt_forker_thread"]["state"] == "rejected"
        assert zygote.status()["forker"]["generation"] == status["forker"]["generation"]  # no second retirement
        assert not connection.ledger.open_ids


AT_FORK = ("zt_thread_after_fork", "zt_c_thread_after_fork")
"""A thread in the parent after each fork: from a Python at-fork hook, and from a C handler."""
INNOCENT = ("zt_eager", "zt_slow")
"""Their neighbours in the start-up round and in a lazy round: well-behaved, so loaded."""
POOL = 4


def _full_pool(zygote: ZygoteProcess) -> dict[str, Any]:
    def full() -> dict[str, Any] | None:
        status = zygote.status()
        return status if status["healthy"] and status["forker"]["pool"]["idle"] == POOL else None

    result: dict[str, Any] = wait_for(full, 60, "a full warm pool", 0.2)
    return result


def _serves_on(zygote: ZygoteProcess, generation: int, seconds: float) -> None:
    """The same generation, one thread, for ``seconds`` (a retirement loop would show within one refill)."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        forker = zygote.status()["forker"]
        assert (forker["generation"], forker["threads"]) == (generation, 1), forker
        time.sleep(0.5)
    assert not zygote.events("forker.retired")


def _settled(zygote: ZygoteProcess) -> dict[str, dict[str, Any]] | None:
    status = zygote.status()
    preload: dict[str, dict[str, Any]] = status["preload"]
    busy = status["forker"]["promoting"] or {r["state"] for r in preload.values()} & {"pending", "probing"}
    return None if busy or "zt_slow" not in preload else preload


def _caught_by_probe(preload: dict[str, dict[str, Any]]) -> None:
    for name in AT_FORK:
        assert (preload[name]["state"], preload[name]["kind"]) == ("rejected", "thread_after_fork"), preload[name]
    for name in INNOCENT:
        assert preload[name]["state"] == "loaded", preload[name]


def test_a_thread_started_at_fork_is_caught_by_the_probe_and_the_pool_serves_on(
    tmp_path: Path, state_file: Path, migrated_db: Path, driver: ParseDriver
) -> None:
    from zygote.client.control import request_reload

    env = zygote_env(
        approved_modules=", ".join((*AT_FORK, *INNOCENT)),
        preload_modules="zt_thread_after_fork, zt_eager",  # probed in the start-up round
        preload_state_file=str(state_file),
        preload_interval="1",
        warm_workers=str(POOL),
    )
    zygote = ZygoteProcess.start(env, tmp_path / "zygote.log")
    try:
        generation = _full_pool(zygote)["forker"]["generation"]
        dags = dags_folder("preload-at-fork")
        with connected(zygote) as connection:
            # A lazy round in the loop: the C handler's module and an innocent one, reported by a worker.
            first = parse(driver, connection, importing_dag(dags, "at_fork_0", "zt_c_thread_after_fork", "zt_slow"))
            assert first.entry.outcome == "exited" and first.dag_ids == ["at_fork_0"], first.import_errors
            preload = wait_for(lambda: _settled(zygote), 90, "the lazy round to settle", 0.2)
            _caught_by_probe(preload)
            assert "a fork left 1 thread(s) running in the parent" in preload["zt_thread_after_fork"]["reason"]
            for n in range(1, 4):
                parsed = parse(driver, connection, importing_dag(dags, f"at_fork_{n}", *INNOCENT))
                assert parsed.entry.outcome == "exited" and parsed.dag_ids == [f"at_fork_{n}"]
                assert not set(INNOCENT) & set(parsed.imports)  # held by the forker
        _full_pool(zygote)  # refilled after every parse and the promotion's eviction
        _serves_on(zygote, generation, 3.0)
        kept = json.loads(state_file.read_text())["rejected"]
        assert {name: kept[name]["kind"] for name in AT_FORK} == dict.fromkeys(AT_FORK, "thread_after_fork")

        request_reload(zygote.settings, timeout_s=120)
        reloaded = _full_pool(zygote)["forker"]["generation"]
        assert reloaded == generation + 1
        preload = preload_of(zygote)
        _caught_by_probe(preload)  # zt_slow from the state file
        for name in AT_FORK:  # rejected from the state file: not probed again
            assert preload[name]["reason"].endswith("(remembered)")
        _serves_on(zygote, reloaded, 2.0)
    finally:
        zygote.stop()
