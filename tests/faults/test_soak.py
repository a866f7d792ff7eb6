"""Soak: thousands of parses side by side with stock; the dag-processor's memory grows no faster than stock's.

The client keeps per-request state (ledger, relay tables); anything kept per parse grows the
long-lived dag-processor until it is OOM-killed. Both sides parse the same small files continuously
(``min_file_process_interval = 0``; files that define no DAG, the cheapest parse, so the
soak reaches thousands of parses in minutes); RSS is sampled after a warm-up and at the end, and the growth
per 1,000 parses is compared.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import pytest
from processes import DagProcessor
from side_by_side import record
from zygote_harness import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(900)]

FILES = 10
PARSES = int(os.environ.get("FAULTS_SOAK_PARSES", "3000"))  # lower only to get a figure on a loaded machine
WARMUP = min(400, PARSES // 5)
SLACK_PER_1000 = 256 * 1024  # RSS noise (allocator arenas, DB caches) allowed above stock's growth


def _sample(processor: DagProcessor) -> tuple[int, float]:
    """(parses so far, median RSS over a few samples): RSS jitters with every parse result."""
    samples = []
    for _ in range(5):
        samples.append(processor.rss())
        time.sleep(0.2)
    return len(processor.home.parses()), statistics.median(samples)


def _growth_per_1000(first: tuple[int, float], last: tuple[int, float]) -> float:
    return (last[1] - first[1]) / (last[0] - first[0]) * 1000


def test_dag_processor_rss_growth_matches_stock(make_home: Any, zygote_factory: Any, start_processor: Any) -> None:
    zygote_home = make_home("zygote")
    stock_home = make_home("stock")
    zygote_home.write_marker_dags(FILES, dags=False)
    stock_home.write_marker_dags(FILES, dags=False)
    zygote = zygote_factory(zygote_home.env)
    ours = start_processor(zygote_home)
    stock = start_processor(stock_home, stock=True)
    started = time.time()
    for side in (ours, stock):
        side.wait_parses(WARMUP, 300)
    first = {"zygote": _sample(ours), "stock": _sample(stock)}
    for side in (ours, stock):
        side.wait_parses(PARSES, 540)
    last = {"zygote": _sample(ours), "stock": _sample(stock)}
    growth = {name: _growth_per_1000(first[name], last[name]) for name in first}
    record(
        "soak",
        seconds=round(time.time() - started),
        parses={name: last[name][0] for name in last},
        rss_mb={name: [round(first[name][1] / 2**20, 1), round(last[name][1] / 2**20, 1)] for name in last},
        growth_kb_per_1000={name: round(value / 1024) for name, value in growth.items()},
    )
    assert ours.local_parses() == 0  # the soak measured the zygote path, not the fallback
    wait_for(lambda: zygote.status()["requests"].get("exited", 0) >= PARSES, 30, "the zygote's own count")
    assert growth["zygote"] <= growth["stock"] + SLACK_PER_1000, growth
