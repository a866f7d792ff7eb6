"""``parsing_processes`` above the zygote's ``max_workers``: the surplus parses locally, at once.

A dag-processor that starts 4 parses at a time against a zygote that runs 1 worker must not queue the
other 3 behind it (nor wait for them on its one thread): it parses as fast as stock with the same
``parsing_processes``, stays healthy, and still uses the zygote for what it can take.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from processes import HEALTH_CHECK_THRESHOLD, HealthSampler, wait_quiet
from side_by_side import SideBySide
from zygote_harness import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(420)]

FILES = 12
WINDOW = 30.0
SETTINGS = {"AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "4", "AIRFLOW__ZYGOTE__MAX_WORKERS": "1"}


def test_parsing_processes_above_max_workers(make_home: Any, zygote_factory: Any, start_processor: Any) -> None:
    zygote_home = make_home("zygote", **SETTINGS)
    stock_home = make_home("stock", **SETTINGS)
    files = zygote_home.write_marker_dags(FILES)
    stock_home.write_marker_dags(FILES)
    zygote_factory(zygote_home.env)
    ours = start_processor(zygote_home)
    stock = start_processor(stock_home, stock=True)
    with HealthSampler(zygote_home) as health:
        side = SideBySide(zygote_home, stock_home, ours, stock, health, files)
        stock.wait_parses(FILES, 180)
        ours.wait_parses(FILES, 180)
        start = time.time()
        wait_quiet(WINDOW)
        window = side.measure("parsing_processes_4_max_workers_1", start, time.time())
    assert ours.alive(), ours.log_text()[-3000:]
    assert window.worst_heartbeat_age < HEALTH_CHECK_THRESHOLD, window
    assert window.zygote_rate >= 0.5 * window.stock_rate, window
    assert ours.remote_parses(start) > 0  # the zygote still takes what it can
    wait_for(lambda: len(zygote_home.active_dags()) == FILES, 60, "every DAG in the DB")
