"""Soak: thousands of parses side by side with stock; the dag-processor's memory grows no faster than stock's.

The client keeps per-request state (ledger, relay tables); anything kept per parse grows the
long-lived dag-processor until it is OOM-killed. Both sides parse the same small files continuously
(``min_file_process_interval = 0``; files that define no DAG, the cheapest parse, so the
soak reaches thousands of parses in minutes); RSS is sampled after a warm-up and when each side
reaches its count (on the zygote side, parses through the zygote: a forker starved for 2 s sends a
few files to the local fallback by design, 28 of 3,005 in a run at load 25-37), and the growth per 1,000
parses is compared.

Eight parsing processes per side: Airflow's loop runs its per-iteration DB queries once for every
child event it wakes for, so more children per wake-up cost less CPU per parse (measured on a stock
dag-processor at load ~24: 115 ms per parse with 2, 85 ms with 8; 1.37 against 2.33 parses/s), and
it keeps more requests in flight in the client's tables at once. A side that reaches its count is
sampled and stopped, so the other gets the machine. The wait is for the count, not for a deadline:
it fails when a side stops making progress for Airflow's own ``dag_file_processor_timeout``.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import pytest
from processes import DAG_FILE_PROCESSOR_TIMEOUT, DagProcessor, wait_progressing
from side_by_side import record
from zygote_harness import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(1800)]

FILES = 10
PARSES = int(os.environ.get("FAULTS_SOAK_PARSES", "3000"))  # lower only to get a figure on a loaded machine
WARMUP = 400  # past the client's bounded windows (its ledger keeps the last 256 entries)
SLACK_PER_1000 = 256 * 1024  # RSS noise (allocator arenas, DB caches) allowed above stock's growth
PARSING_PROCESSES = "8"
STARTUP = 300  # two dag-processors and a zygote importing Airflow on a loaded machine, before any parse


def _sample(processor: DagProcessor) -> tuple[int, float]:
    """(parses so far, median RSS over a few samples): RSS jitters with every parse result."""
    samples = []
    for _ in range(5):
        samples.append(processor.rss())
        time.sleep(0.2)
    return processor.parse_count(), statistics.median(samples)


def _growth_per_1000(first: tuple[int, float], last: tuple[int, float]) -> float:
    return (last[1] - first[1]) / (last[0] - first[0]) * 1000


def _progress(name: str, side: DagProcessor) -> int:
    """Parses that count toward the soak: through the zygote on its side (a starved forker may send some local)."""
    return side.remote_parses() if name == "zygote" else side.parse_count()


def _sample_each_at(sides: dict[str, DagProcessor], count: int, stop: bool) -> dict[str, tuple[int, float]]:
    """Sample each side once it has made ``count`` parses (and stop it, if ``stop``) while the other runs on."""
    samples: dict[str, tuple[int, float]] = {}

    def all_sampled() -> bool:
        for name, side in sides.items():
            assert side.alive() or name in samples, f"{name} dag-processor exited:\n{side.log_text()[-4000:]}"
            if name not in samples and _progress(name, side) >= count:
                samples[name] = _sample(side)
                if stop:
                    side.stop()
        return len(samples) == len(sides)

    def counts() -> dict[str, int]:
        return {name: _progress(name, side) for name, side in sides.items() if name not in samples}

    wait_progressing(all_sampled, counts, DAG_FILE_PROCESSOR_TIMEOUT, f"{count} parses on each side")
    return samples


def test_dag_processor_rss_growth_matches_stock(make_home: Any, zygote_factory: Any, start_processor: Any) -> None:
    zygote_home = make_home("zygote", AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES=PARSING_PROCESSES)
    stock_home = make_home("stock", AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES=PARSING_PROCESSES)
    zygote_home.write_marker_dags(FILES, dags=False)
    stock_home.write_marker_dags(FILES, dags=False)
    zygote = zygote_factory(zygote_home.env)
    ours = start_processor(zygote_home)
    stock = start_processor(stock_home, stock=True)
    sides = {"zygote": ours, "stock": stock}
    started = time.time()
    for side in sides.values():
        side.wait_parses(1, STARTUP)
    first = _sample_each_at(sides, WARMUP, stop=False)
    last = _sample_each_at(sides, PARSES, stop=True)
    growth = {name: _growth_per_1000(first[name], last[name]) for name in first}
    record(
        "soak",
        seconds=round(time.time() - started),
        parses={name: last[name][0] for name in last},
        rss_mb={name: [round(first[name][1] / 2**20, 1), round(last[name][1] / 2**20, 1)] for name in last},
        growth_kb_per_1000={name: round(value / 1024) for name, value in growth.items()},
        zygote_local_parses=ours.local_parses(),
    )
    wait_for(lambda: zygote.status()["requests"].get("exited", 0) >= PARSES, 30, "the zygote's own count")
    assert growth["zygote"] <= growth["stock"] + SLACK_PER_1000, growth
