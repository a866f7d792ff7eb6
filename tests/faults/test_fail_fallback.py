"""``[zygote] fallback = fail`` means "not now": an outage marks no DAG stale and loses no callback.

The zygote (gateway, forker and workers: the whole sidecar) is killed for longer than
``[dag_processor] stale_dag_threshold`` while the dag-processor runs, in the middle of a slow parse
that has already run longer than that threshold (a slow file, or any file on a loaded machine: the
parse lost with the zygote must not count as a parse that found no DAG). A DAG failure callback is
queued in the DB during the outage, for a file the dag-processor cannot parse then. No DAG may be
deactivated as stale during the outage, and once a zygote is back the callback runs (its marker file
appears).
"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from fault_home import marker_dag
from zygote_harness import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(420)]

STALE_DAG_THRESHOLD = 8
OUTAGE = 30.0
IMPORT_TIMEOUT = 30
"""Airflow's default ``[core] dagbag_import_timeout``: the slow parse must still be running when the zygote dies."""
SLOW_PARSE = IMPORT_TIMEOUT - 5
SLOW_BODY = "if os.path.exists({flag!r}):\n    time.sleep({seconds})\n"
ON_FAILURE = """
def _on_failure(context):
    with open({path!r}, 'a') as out:
        out.write(str(context['reason']) + '\\n')
"""


def _callback_dag(marker: Path, callbacks: Path) -> str:
    text = marker_dag(marker, "with_callback", body=ON_FAILURE.format(path=str(callbacks)))
    return text.replace(
        "start_date=datetime.datetime(2024, 1, 1))",
        "start_date=datetime.datetime(2024, 1, 1), on_failure_callback=_on_failure)",
    )


QUEUE_CALLBACK = """
from airflow.callbacks.callback_requests import DagCallbackRequest
from airflow.callbacks.database_callback_sink import DatabaseCallbackSink
DatabaseCallbackSink().send(DagCallbackRequest(
    filepath='with_callback.py', bundle_name='dags-folder', bundle_version=None,
    dag_id='with_callback', run_id='manual__outage', is_failure_callback=True, msg='failed during the outage'))
"""


def test_outage_longer_than_stale_threshold_keeps_dags_and_callbacks(
    make_home: Any, zygote_factory: Any, start_processor: Any
) -> None:
    home = make_home(
        "side",
        AIRFLOW__ZYGOTE__FALLBACK="fail",
        AIRFLOW__DAG_PROCESSOR__STALE_DAG_THRESHOLD=str(STALE_DAG_THRESHOLD),
        AIRFLOW__SCHEDULER__PARSING_CLEANUP_INTERVAL="1",
    )
    callbacks = home.root / "callbacks.log"
    slow_flag = home.root / "slow"
    home.write_marker_dags(3)
    home.write_marker_dags(1, prefix="slow", body=SLOW_BODY.format(flag=str(slow_flag), seconds=SLOW_PARSE))
    (home.dags / "with_callback.py").write_text(_callback_dag(home.marker, callbacks))
    zygote = zygote_factory(home.env)
    processor = start_processor(home)
    wait_for(lambda: len(home.active_dags()) == 5, 180, "all five DAGs in the DB", interval=0.5)
    processor.wait_parses(15, 60)

    _kill_during_slow_parse(home, zygote, slow_flag)
    outage_start = time.time()
    home.python(QUEUE_CALLBACK)
    stale_seen: set[str] = set()
    while time.time() - outage_start < OUTAGE:
        stale_seen |= home.stale_dags()
        time.sleep(0.5)
    stale_seen |= home.stale_dags()  # stale stays set until a parse succeeds, which it cannot yet
    assert processor.alive(), processor.log_text()[-3000:]
    assert "parse ended without a result" in _file_log(home, "slow000.py")  # it was lost, not finished
    assert not stale_seen, f"DAGs marked stale during a {OUTAGE:.0f} s zygote outage: {sorted(stale_seen)}"
    assert not callbacks.exists()  # nothing could parse it yet (fallback = fail)

    zygote_factory(home.env)
    wait_for(callbacks.exists, 90, "the callback queued during the outage to run", interval=0.5)
    assert callbacks.read_text() == "failed during the outage\n"
    wait_for(lambda: len(home.active_dags()) == 5, 60, "all five DAGs active again", interval=0.5)
    assert not home.stale_dags()


def _kill_during_slow_parse(home: Any, zygote: Any, slow_flag: Path) -> None:
    """Kill the whole sidecar (as a node or OOM kill would) once the slow parse has outlived the threshold.

    From then on, a lost parse counted as a parse would mark ``slow000`` stale whatever the machine's
    speed; the parse itself would still run ``SLOW_PARSE`` seconds, short of Airflow's import timeout.
    """
    slowed_at = time.time()
    slow_flag.touch()
    wait_for(
        lambda: any(p.file == "slow000.py" and p.at >= slowed_at for p in home.parses()),
        60,
        "a slow parse to begin",
        interval=0.2,
    )
    last_good = home.last_parsed()["slow000"]
    wait_for(
        lambda: (datetime.now(timezone.utc) - last_good).total_seconds() > STALE_DAG_THRESHOLD + 1,
        30,
        "the slow parse to outlive the stale threshold",
        interval=0.2,
    )
    os.killpg(zygote.popen.pid, signal.SIGKILL)
    zygote.popen.wait(10)
    slow_flag.unlink()


def _file_log(home: Any, name: str) -> str:
    logs = Path(home.env["AIRFLOW_HOME"]) / "logs" / "dag_processor"
    return "".join(path.read_text(errors="replace") for path in logs.rglob(f"{name}.log"))
