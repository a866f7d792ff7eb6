"""Worker lifecycle through a real zygote: one terminal reply per request whatever the worker does."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from dagfiles import simple_dag, write
from zygote_harness import AIRFLOW, ParseDriver, RawClient, ZygoteProcess, pid_alive, spawn_message, wait_for

pytestmark = pytest.mark.e2e

MARKER = "# airflow DAG\n"
KINDS = {
    "raises.py": "raise ValueError('parse-time failure')",
    "sys_exit.py": "import sys; sys.exit(1)",
    "os_exit.py": "import os; os._exit(3)",
    "self_kill.py": "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_way_of_ending_gives_one_terminal_reply(
    name: str, dags: Path, driver: ParseDriver, connection: Any
) -> None:
    path = write(dags, name, MARKER + KINDS[name] + "\n")
    stock = driver.finish(driver.start_stock(path, dags))
    ours = driver.finish(driver.start_zygote(connection, path, dags))
    assert ours.exit_code == stock.exit_code
    assert (ours.result is None) == (stock.result is None)
    if stock.result is not None:
        assert ours.result.import_errors == stock.result.import_errors
    [entry] = connection.ledger.entries
    assert entry.exit_code == int(stock.exit_code)
    assert not connection.ledger.open_ids


def test_client_kill_reaches_the_worker(dags: Path, driver: ParseDriver, connection: Any) -> None:
    path = write(dags, "sleeps.py", MARKER + "import time; time.sleep(600)\n")
    proc = driver.start_zygote(connection, path, dags)
    started = time.monotonic()
    proc.kill(signal.SIGKILL)
    outcome = driver.finish(proc)
    assert outcome.exit_code == -signal.SIGKILL
    assert time.monotonic() - started < 5  # no 5 s escalation sleep: the exit status arrived in time
    [entry] = connection.ledger.entries
    assert entry.outcome == "killed"


def test_deadline_kills_a_worker_that_runs_too_long(
    zygote_factory: Any, inproc_env: dict[str, str], dags: Path
) -> None:
    zygote = zygote_factory(inproc_env, AIRFLOW__ZYGOTE__WORKER_TIMEOUT="1")
    path = write(dags, "forever.py", MARKER + "import time; time.sleep(600)\n")
    client = RawClient(zygote.settings.socket)
    try:
        client.hello()
        from protocol import Exited, Started

        client.send(spawn_message("slow-1", path))
        started = client.expect(Started, request_id="slow-1")
        exited = client.expect(Exited, request_id="slow-1", timeout=20)
        assert exited.outcome == "deadline"
        assert exited.exit_code == -signal.SIGKILL
        assert not pid_alive(started.pid)
    finally:
        client.close()


def test_forker_stays_single_threaded_and_leaves_no_children(
    zygote: ZygoteProcess, dags: Path, driver: ParseDriver, connection: Any
) -> None:
    path = write(dags, "forks.py", simple_dag("forks") + "import subprocess\nsubprocess.Popen(['sleep', '300'])\n")
    outcome = driver.finish(driver.start_zygote(connection, path, dags))
    assert outcome.exit_code == 0
    status = zygote.status()
    assert status["forker"]["threads"] == 1
    assert status["forker"]["frozen_objects"] > 10_000
    forker = psutil.Process(status["forker"]["pid"])

    def strays() -> list[int]:  # the warm pool's idle workers are the forker's children on purpose
        children = [child.pid for child in forker.children(recursive=True)]
        pool = set(zygote.status()["forker"]["pool"]["pids"])
        return [pid for pid in children if pid not in pool]

    wait_for(lambda: not strays(), 10, "the worker's stray child to be killed")


def test_sigterm_drains_in_flight_work_and_exits_zero(
    zygote_factory: Any, inproc_env: dict[str, str], dags: Path, driver: ParseDriver
) -> None:
    from zygote.client.connection import ZygoteConnection
    from zygote.client.ledger import Ledger

    zygote = zygote_factory(inproc_env)
    connection = ZygoteConnection(zygote.settings, Ledger())
    path = write(dags, "slow.py", simple_dag("slow_dag") + "import time\ntime.sleep(2)\n")
    proc = driver.start_zygote(connection, path, dags)
    zygote.popen.send_signal(signal.SIGTERM)
    outcome = driver.finish(proc)
    assert outcome.exit_code == 0
    assert [dag.data["dag"]["dag_id"] for dag in outcome.result.serialized_dags] == ["slow_dag"]
    assert zygote.popen.wait(30) == 0
    connection.close()


def test_vanished_client_has_its_workers_killed(zygote: ZygoteProcess, dags: Path) -> None:
    from protocol import Started

    path = write(dags, "sleepy.py", MARKER + "import time; time.sleep(600)\n")
    gone_before = zygote.status()["requests"].get("client_gone", 0)
    client = RawClient(zygote.settings.socket)
    client.hello()
    client.send(spawn_message("orphan-1", path))
    started = client.expect(Started, request_id="orphan-1")
    assert pid_alive(started.pid)
    client.close()  # no goodbye: the closed connection tells
    wait_for(lambda: not pid_alive(started.pid), 20, "the vanished client's worker to be killed")
    assert zygote.status()["requests"].get("client_gone") == gone_before + 1


def test_status_json_reports_the_documented_fields(zygote: ZygoteProcess) -> None:
    done = subprocess.run(
        [AIRFLOW, "zygote", "status", "--json"], check=False, env=zygote.env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    assert set(report["versions"]) == {"protocol", "airflow", "python"}
    assert report["gateway"]["pid"] == zygote.popen.pid
    assert {"pid", "threads", "frozen_objects", "generation"} <= set(report["forker"])
    assert report["forker"]["threads"] == 1
    assert {"running", "queued"} <= set(report["workers"])
    assert isinstance(report["requests"], dict)
    assert all({"state", "reason"} <= set(entry) for entry in report["preload"].values())
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert [key for key in report if f"`{key}`" not in readme] == []
