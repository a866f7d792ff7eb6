"""``[zygote] fallback = fail`` means "not now": callbacks wait for the zygote, DAGs never go stale.

A real ``airflow zygote dag-processor`` on a real SQLite DB: the DAGs are parsed once through a
zygote; the zygote goes away; a DAG failure callback is queued in the DB; for longer than
``stale_dag_threshold`` nothing can be parsed. Then the zygote comes back and the callback runs in
one of its workers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dagfiles import simple_dag
from e2e_support import dag_rows, stop_processor
from zygote_harness import AIRFLOW, wait_for

import zygote as zygote_package

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CALLBACK_DAG = """from __future__ import annotations
import datetime, os
from pathlib import Path
from airflow.sdk import DAG

def on_dag_failure(context):
    (Path({markers!r}) / f"dag-{{os.getpid()}}").write_text(str(context["reason"]))

with DAG("callback_dag", schedule=None, start_date=datetime.datetime(2024, 1, 1),
         on_failure_callback=on_dag_failure):
    pass
"""

QUEUE_CALLBACK = """
from airflow.callbacks.callback_requests import DagCallbackRequest
from airflow.models.db_callback_request import DbCallbackRequest
from airflow.utils.session import create_session
request = DagCallbackRequest(filepath="callback_dag.py", bundle_name="dags-folder", bundle_version=None,
                             dag_id="callback_dag", run_id="manual__1", is_failure_callback=True, msg="run failed")
with create_session() as session:
    session.add(DbCallbackRequest(priority_weight=10, callback=request))
"""


def _dag_processor(env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([AIRFLOW, "zygote", "dag-processor", *extra], env=env, stdout=out, stderr=out)


def test_an_outage_under_fail_keeps_callbacks_and_never_makes_dags_stale(
    airflow_env: dict[str, str], zygote_factory: Any, tmp_path: Path
) -> None:
    dags = Path(airflow_env["AIRFLOW__CORE__DAGS_FOLDER"])
    markers = tmp_path / "markers"
    markers.mkdir()
    (dags / "stays.py").write_text(simple_dag("stays"))
    (dags / "callback_dag.py").write_text(CALLBACK_DAG.format(markers=str(markers)))
    env = {
        **airflow_env,
        "AIRFLOW__ZYGOTE__FALLBACK": "fail",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "0",
        "AIRFLOW__DAG_PROCESSOR__STALE_DAG_THRESHOLD": "2",
        "AIRFLOW__SCHEDULER__PARSING_CLEANUP_INTERVAL": "1",
    }
    db = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    first = zygote_factory(env)
    assert _dag_processor(env, tmp_path / "first.log", "-n", "1").wait(300) == 0
    assert {(row[0], row[3]) for row in dag_rows(db)} == {("stays", 0), ("callback_dag", 0)}
    first.stop()

    subprocess.run([sys.executable, "-c", QUEUE_CALLBACK], env=env, check=True, capture_output=True, timeout=120)
    log = tmp_path / "outage.log"
    processor = _dag_processor(env, log)
    try:
        wait_for(lambda: log.read_text(errors="replace").count("zygote.unavailable") >= 1, 120, "the outage")
        wait_for(lambda: "Parse not started" in _file_logs(env), 120, "a parse that did not start")
        outage_started = _not_started_count(env)
        wait_for(lambda: _not_started_count(env) >= outage_started + 6, 120, "files retried during the outage")
        assert not list(markers.iterdir())  # the callback waits for the zygote
        assert all(row[3] == 0 for row in dag_rows(db)), dag_rows(db)  # beyond stale_dag_threshold: not stale

        zygote_factory(env)
        wait_for(lambda: list(markers.iterdir()), 120, "the kept callback to run in a zygote worker")
        assert [path.read_text() for path in markers.iterdir()] == ["run failed"]
        assert all(row[3] == 0 for row in dag_rows(db)), dag_rows(db)
    finally:
        stop_processor(processor)
    text = log.read_text(errors="replace")
    assert "zygote.relay_crashed" not in text


def test_a_file_the_zygote_refuses_at_once_never_stops_the_dag_processor(
    airflow_env: dict[str, str], zygote_factory: Any, tmp_path: Path
) -> None:
    """A refusal can reach the relay before the manager wrote the parse request: the write must not kill it.

    Found by CI: git-sync deleted a queued file, the zygote refused its path within a millisecond, the
    relay closed the local sockets, and the manager's ``DagFileParseRequest`` write hit a broken pipe
    that ended the dag-processor. A symlink escaping the roots is refused on every attempt.
    """
    dags = Path(airflow_env["AIRFLOW__CORE__DAGS_FOLDER"])
    (dags / "good.py").write_text(simple_dag("good"))
    outside = tmp_path / "outside.py"
    outside.write_text(simple_dag("outside"))
    (dags / "escape.py").symlink_to(outside)
    env = {**airflow_env, "AIRFLOW__ZYGOTE__FALLBACK": "fail", "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "0"}
    zygote = zygote_factory(env)
    log = tmp_path / "refused.log"
    processor = _dag_processor(env, log)
    try:

        def refused_often() -> bool:
            assert processor.poll() is None, f"the dag-processor exited:\n{log.read_text(errors='replace')[-3000:]}"
            counts = zygote.status(timeout=10)["requests"]
            return counts.get("rejected_path", 0) >= 30 and counts.get("exited", 0) >= 5

        wait_for(refused_often, 240, "30 refusals and 5 parses of the good file", interval=0.5)
        assert processor.poll() is None
        assert [row[0] for row in dag_rows(Path(env["AIRFLOW_HOME"]) / "airflow.db")] == ["good"]
        running = log.read_text(errors="replace")
        assert "Traceback" not in running
    finally:
        stop_processor(processor)
    # Stock's SIGTERM handler calls sys.exit() from whatever code runs, a weakref callback included
    # ("Exception ignored in ... weakref.py"): noise of its own. None of ours may appear at the stop.
    stopping = log.read_text(errors="replace")[len(running) :]
    assert f'File "{Path(zygote_package.__file__).parent}' not in stopping, stopping


def _file_logs(env: dict[str, str]) -> str:
    logs = Path(env["AIRFLOW_HOME"]) / "logs" / "dag_processor"
    return "".join(path.read_text(errors="replace") for path in logs.rglob("*.log")) if logs.exists() else ""


def _not_started_count(env: dict[str, str]) -> int:
    return _file_logs(env).count("Parse not started")
