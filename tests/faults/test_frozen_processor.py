"""A dag-processor frozen for 30 s (SIGSTOP, a debugger, CPU starvation) loses none of its parses.

Two dynamic-factory files produce parse results of about 4 MB and 13 MB (above the relay's credit
window). The zygote-backed dag-processor (one parse per file: ``min_file_process_interval`` is an
hour) is SIGSTOPped as soon as both workers started, for longer than ``[zygote] heartbeat_timeout``;
the workers finish meanwhile. After SIGCONT it must write the same rows as stock ``airflow
dag-processor`` on the same folder. (Stock ``-n 1`` is no reference here: it was seen to end its loop,
killing these slow parses, before they finished.)
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_support import dag_rows, import_errors, serialized_dags
from fault_home import marker_only
from processes import wait_quiet
from zygote_harness import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(600)]

FREEZE = 30.0
FACTORIES = {"factory_4mb.py": (100, 40_000), "factory_13mb.py": (130, 100_000)}  # DAGs, doc_md bytes each
TOTAL = sum(dags for dags, _ in FACTORIES.values())
# One parse per file for the whole test (a lost parse is not hidden by a retry), and no timeout kill.
SETTINGS = {
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
    "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "300",
}


def _factory(marker: Path, name: str, dags: int, pad: int) -> str:
    prefix = name.removesuffix(".py")
    return (
        marker_only(marker)
        + "from airflow.sdk import DAG\n"
        + "from airflow.providers.standard.operators.empty import EmptyOperator\n"
        + f"PAD = ''.join(chr(97 + (i * 7919) % 26) for i in range({pad}))\n"
        + f"for n in range({dags}):\n"
        + f"    with DAG(f'{prefix}_{{n}}', schedule=None, start_date=datetime.datetime(2024, 1, 1), doc_md=PAD + str(n)):\n"
        + "        EmptyOperator(task_id='t0')\n"
    )


def _all_written(home: Any) -> bool:
    """Every factory DAG in the DB, or an import error (a parse that ended without its result)."""
    return bool(home.import_errors()) or len(serialized_dags(home.db)) == TOTAL


def test_frozen_dag_processor_writes_the_same_rows_as_stock(
    tmp_path: Path, make_home: Any, zygote_factory: Any, start_processor: Any
) -> None:
    folder = tmp_path / "factories"
    folder.mkdir()
    ours = make_home("zygote", dags=folder, **SETTINGS)
    stock = make_home("stock", dags=folder, **SETTINGS)
    for name, (dags, pad) in FACTORIES.items():
        (folder / name).write_text(_factory(ours.marker, name, dags, pad))
    stock_side = start_processor(stock, stock=True)
    wait_for(lambda: _all_written(stock), 240, "stock's rows", interval=0.5)
    stock_side.stop()
    expected = serialized_dags(stock.db)
    assert len(expected) == TOTAL and not stock.import_errors()

    zygote = zygote_factory(ours.env)
    since = time.time()
    processor = start_processor(ours)
    wait_for(
        lambda: {p.file for p in ours.parses_between(since, time.time() + 1)} == set(FACTORIES), 180, "both workers"
    )
    os.kill(processor.pid, signal.SIGSTOP)
    try:
        wait_quiet(FREEZE)
    finally:
        os.kill(processor.pid, signal.SIGCONT)
    try:
        wait_for(lambda: _all_written(ours), 180, "the rows of the parses made while frozen", interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; zygote requests {zygote.status()['requests']}") from None
    ours_parses = ours.parses_between(since, time.time())
    assert len(ours_parses) == len(FACTORIES), ours_parses  # each file parsed once: nothing retried
    assert all(p.ppid != processor.pid for p in ours_parses), "parsed locally"
    counts = zygote.status()["requests"]
    assert set(counts) == {"exited"}, counts  # no worker killed as client_gone, no output cut off
    assert import_errors(ours.db) == []
    assert serialized_dags(ours.db) == expected
    assert dag_rows(ours.db) == dag_rows(stock.db)
