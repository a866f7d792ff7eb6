"""A module that passes its probe but starts a thread in the forker retires that generation.

The probe cannot see it (the module behaves differently in the forker), so the forker checks its
own threads after every promotion: the module is rejected and remembered in the state file, the
generation stops forking and is replaced, and parses keep being served.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from preload_support import connected, dags_folder, importing_dag, parse, preload_of, zygote_env
from zygote_harness import ParseDriver, ZygoteProcess, wait_for

pytestmark = pytest.mark.e2e


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
        assert "zt_forker_thread" in json.loads(state_file.read_text())["rejected_in_forker"]
        assert [event["generation"] for event in zygote.events("forker.retired")] == [first_generation]

        again = parse(driver, connection, importing_dag(dags, "retire_again", "zt_forker_thread"))
        assert again.entry.outcome == "exited" and again.dag_ids == ["retire_again"]
        assert preload_of(zygote)["zt_forker_thread"]["state"] == "rejected"
        assert zygote.status()["forker"]["generation"] == status["forker"]["generation"]  # no second retirement
        assert not connection.ledger.open_ids
