"""Reload (SIGHUP, ``airflow zygote reload``) while parses keep coming: none lost, none duplicated.

One zygote serves the module; its ``[zygote]`` settings come from a config file of its own
(``AIRFLOW_CONFIG``), so a test can change them between generations. A "gated" DAG file keeps
one worker of the old generation busy until the test opens the gate, which shows the old
generation draining (finishing its work) while the new one already serves.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from preload_support import (
    ParseStream,
    config_file_with,
    connected,
    dags_folder,
    gated_body,
    importing_dag,
    parse,
    preload_of,
    wait_for_state,
    zygote_env,
)
from zygote_harness import AIRFLOW, ParseDriver, ZygoteProcess, pid_alive, wait_for

pytestmark = pytest.mark.e2e

RELOAD_TIMEOUT_S = 120.0
IN_FLIGHT = "import time\ntime.sleep(1)\n"
"""Each streamed parse stays in flight a while, mostly idle (so the stream does not starve the new forker)."""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reload")


def write_config(workdir: Path, **zygote_options: str) -> Path:
    """The zygote's own airflow.cfg: ``approved_modules = zt_slow`` and a state file, unless overridden.

    The tests' environment sets none of these ``[zygote]`` options, so the file decides them.
    """
    options = {"approved_modules": "zt_slow", "preload_state_file": str(workdir / "preload.json"), **zygote_options}
    return config_file_with(workdir / "airflow.cfg", **options)


@pytest.fixture(scope="module")
def config_file(workdir: Path, migrated_db: Path) -> Path:
    return write_config(workdir)


@pytest.fixture(scope="module")
def zygote(workdir: Path, config_file: Path, migrated_db: Path) -> Iterator[ZygoteProcess]:
    env = {**zygote_env(), "AIRFLOW_CONFIG": str(config_file)}
    process = ZygoteProcess.start(env, workdir / "zygote.log")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def reload_dags() -> Path:
    return dags_folder("reload-under-load")


@pytest.fixture
def connection(zygote: ZygoteProcess) -> Iterator[Any]:
    with connected(zygote) as conn:
        yield conn


def end_unseen_by_the_gateway(stream: ParseStream, gateway: int, forker: int, worker: int, gate: Path) -> None:
    """Let a draining forker's last worker and then the forker end while the gateway is paused.

    On resuming, the gateway finds SIGCHLD for the forker and the forker's last ``exited``, unread,
    at the same time: the order it handles them in must not lose the request. The worker needs
    the gateway (and the client) to answer its result, so only the forker is paused while the
    worker finishes.
    The gateway's pause stays well under the clients' heartbeat timeout.
    """
    with paused(forker):
        gate.touch()
        stream.serve_until(lambda: not pid_alive(worker), 30, "the old generation's last worker to end")
        os.kill(gateway, signal.SIGSTOP)
    try:
        wait_for(lambda: not pid_alive(forker), 10, "the old forker to end while the gateway is paused")
    finally:
        os.kill(gateway, signal.SIGCONT)


@contextmanager
def paused(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def serving(zygote: ZygoteProcess) -> dict[str, Any]:
    forker: dict[str, Any] = zygote.status()["forker"]
    return forker


def outcomes(zygote: ZygoteProcess) -> dict[str, int]:
    """The gateway's count of terminal replies by outcome (errors included)."""
    counts: dict[str, int] = zygote.status()["requests"]
    return counts


def assert_each_request_ended_once(
    stream: ParseStream, connection: Any, zygote: ZygoteProcess, outcomes_before: dict[str, int]
) -> None:
    """Every parse started ended in exactly one ``exited`` (exit 0, its DAG parsed), nothing else."""
    assert len(stream.done) == stream.started
    ids = [parsed.entry.request_id for parsed in stream.done]
    assert len(set(ids)) == len(ids)
    assert not connection.ledger.open_ids
    for parsed in stream.done:
        assert (parsed.entry.outcome, parsed.entry.exit_code) == ("exited", 0), parsed.entry
        assert len(parsed.dag_ids) == 1, parsed.import_errors
    outcomes_after = outcomes(zygote)
    new = {key: outcomes_after.get(key, 0) - outcomes_before.get(key, 0) for key in outcomes_after}
    assert {key: count for key, count in new.items() if count} == {"exited": stream.started}


def test_sighup_during_a_stream_of_parses(
    zygote: ZygoteProcess, reload_dags: Path, workdir: Path, driver: ParseDriver, connection: Any
) -> None:
    busy = importing_dag(reload_dags, "busy", "zt_slow", body=IN_FLIGHT)
    parse(driver, connection, busy)
    assert wait_for_state(zygote, "zt_slow", {"loaded", "rejected"})["state"] == "loaded"
    assert "zt_eager" not in preload_of(zygote)
    write_config(workdir, approved_modules="zt_slow, zt_eager", preload_modules="zt_eager")
    old = serving(zygote)
    gate = workdir / "gate"
    stream = ParseStream(driver, connection, busy)
    outcomes_before = outcomes(zygote)
    held = stream.start(importing_dag(reload_dags, "gated", "zt_slow", body=gated_body(gate)))
    stream.pump()

    os.kill(zygote.popen.pid, signal.SIGHUP)
    new_generation = old["generation"] + 1
    stream.pump_until(lambda: stream.served_by(new_generation), RELOAD_TIMEOUT_S, "the new generation to serve")
    generations = {g["generation"]: g["state"] for g in zygote.status()["generations"]}
    assert generations == {old["generation"]: "draining", new_generation: "ready"}  # the gated worker runs on

    stream.finish_all(but=held)  # a paused gateway relays nothing: no other parse may wait on it
    end_unseen_by_the_gateway(stream, zygote.popen.pid, old["pid"], held.pid, gate)
    stream.pump_until(lambda: held not in stream.running, 60, "the old generation's last worker")
    stream.pump_until(lambda: len(stream.served_by(new_generation)) >= 3, 60, "parses on the new generation")
    stream.finish_all()

    assert_each_request_ended_once(stream, connection, zygote, outcomes_before)
    [gated_parse] = [p for p in stream.done if p.dag_ids == ["gated"]]
    assert gated_parse.entry.stats["generation"] == old["generation"]
    assert len(stream.served_by(old["generation"])) > 1
    assert [g["generation"] for g in zygote.status()["generations"]] == [new_generation]
    preload = preload_of(zygote)
    assert preload["zt_eager"]["state"] == "loaded"  # the new generation read the changed config
    # ... and warmed up from the state file: no parse it served imported zt_slow.
    assert preload["zt_slow"]["state"] == "loaded"
    assert not [p for p in stream.served_by(new_generation) if "zt_slow" in p.imports]


def test_cli_reload_returns_once_the_new_generation_serves(zygote: ZygoteProcess) -> None:
    old = serving(zygote)
    done = subprocess.run(
        [AIRFLOW, "zygote", "reload"], env=zygote.env, capture_output=True, timeout=RELOAD_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    status = zygote.status()
    assert status["healthy"]
    assert status["forker"]["threads"] == 1
    assert status["forker"]["generation"] > old["generation"]
    assert f"generation {status['forker']['generation']} is serving" in done.stdout.decode()
    wait_for(lambda: not pid_alive(old["pid"]), 30, "the old forker to end")


def test_a_generation_that_fails_to_start_leaves_the_old_one_serving(
    zygote: ZygoteProcess, workdir: Path, reload_dags: Path, driver: ParseDriver, connection: Any
) -> None:
    from zygote.client.control import ControlError, request_reload

    old = serving(zygote)
    write_config(workdir, fallback="neither-local-nor-fail")  # the new forker's settings do not load
    try:
        with pytest.raises(ControlError, match="died while starting"):
            request_reload(zygote.settings, timeout_s=60)
    finally:
        write_config(workdir)
    assert serving(zygote)["pid"] == old["pid"]
    parsed = parse(driver, connection, importing_dag(reload_dags, "after_failed_reload", "zt_slow"))
    assert (parsed.entry.outcome, parsed.dag_ids) == ("exited", ["after_failed_reload"])
    assert parsed.entry.stats["generation"] == old["generation"]
