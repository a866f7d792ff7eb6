"""Callbacks (DAG and task failure) run in a zygote worker, as they would in a stock parse child."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from zygote_harness import ParseDriver

pytestmark = pytest.mark.e2e


def _dag_file(markers: Path) -> str:
    return f"""from __future__ import annotations
import datetime, os
from pathlib import Path
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

MARKERS = Path({str(markers)!r})

def on_dag_failure(context):
    (MARKERS / f"dag-{{os.getpid()}}").write_text(str(context["reason"]))

def on_task_failure(context):
    (MARKERS / f"task-{{os.getpid()}}").write_text(context["ti"].task_id)

with DAG("callback_dag", schedule=None, start_date=datetime.datetime(2024, 1, 1),
         on_failure_callback=on_dag_failure):
    EmptyOperator(task_id="doomed", on_failure_callback=on_task_failure)
"""


def _callbacks(path: Path) -> list[Any]:
    from airflow.api_fastapi.execution_api.datamodels.taskinstance import TaskInstance
    from airflow.callbacks.callback_requests import DagCallbackRequest, TaskCallbackRequest

    common = {"filepath": path.name, "bundle_name": "dags-folder", "bundle_version": None}
    ti = TaskInstance(
        id=uuid.uuid4(),
        task_id="doomed",
        dag_id="callback_dag",
        run_id="manual__1",
        try_number=1,
        dag_version_id=uuid.uuid4(),
    )
    return [
        DagCallbackRequest(
            dag_id="callback_dag", run_id="manual__1", is_failure_callback=True, msg="run failed", **common
        ),
        TaskCallbackRequest(ti=ti, msg="task failed", **common),
    ]


def _markers(folder: Path) -> dict[str, str]:
    return {path.name.split("-")[0]: path.read_text() for path in folder.iterdir()}


def test_dag_and_task_failure_callbacks_run_in_a_zygote_worker(
    dags: Path, tmp_path: Path, driver: ParseDriver, connection: Any
) -> None:
    stock_markers, zygote_markers = tmp_path / "stock", tmp_path / "zygote"
    stock_markers.mkdir()
    zygote_markers.mkdir()
    stock_file = dags / "stock_callbacks.py"
    stock_file.write_text(_dag_file(stock_markers))
    zygote_file = dags / "zygote_callbacks.py"
    zygote_file.write_text(_dag_file(zygote_markers))

    stock = driver.finish(driver.start_stock(stock_file, dags, _callbacks(stock_file)))
    ours = driver.finish(driver.start_zygote(connection, zygote_file, dags, _callbacks(zygote_file)))

    assert _markers(stock_markers) == {"dag": "run failed", "task": "doomed"}
    assert _markers(zygote_markers) == _markers(stock_markers)
    assert ours.result is None and stock.result is None  # callback runs produce no parse result
    assert ours.exit_code == stock.exit_code == 0
    [entry] = connection.ledger.entries
    assert entry.outcome == "exited"
    worker_pids = {int(path.name.split("-")[1]) for path in zygote_markers.iterdir()}
    assert worker_pids == {ours.proc.pid}  # both ran in the worker the zygote forked
    assert ours.proc.pid != os.getpid()
