"""Measurements for issue 14 (not a test: run it by name, it only prints figures).

``python -m pytest -s tests/e2e/measure_pool.py``: the forker's CPU time per parse with 16
workers at once under ``worker_memory_limit``, and dispatch latency (the client's request to
Airflow's parse entrypoint running in the worker). Figures go to stdout and ``bench-results/pool.jsonl``.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from dagfiles import simple_dag, write
from preload_support import connected, dags_folder, zygote_env
from zygote_harness import ParseDriver, wait_for

from zygote.client.connection import ZygoteUnavailable

RESULTS = Path(__file__).resolve().parents[2] / "bench-results" / "pool.jsonl"


def _parse_all(driver: ParseDriver, connection: Any, paths: list[Path], concurrency: int) -> list[Any]:
    """Parse every path through the zygote, ``concurrency`` at a time, as the manager would."""
    wait_for(lambda: connection.available, 60, "a ready session")
    waiting, running, done = list(paths), [], []
    while waiting or running:
        while waiting and len(running) < concurrency:
            path = waiting.pop()
            try:
                running.append(driver.start_zygote(connection, path, path.parent))
            except ZygoteUnavailable:  # a loaded machine: the forker answered late; ask again shortly
                waiting.append(path)
                break
        driver.service(0.05)
        for proc in [p for p in running if p.is_ready]:
            proc.close()
            running.remove(proc)
            done.append(proc)
    return done


def _forker_cpu(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _record(figures: dict[str, Any]) -> None:
    print(json.dumps(figures))
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as handle:
        handle.write(json.dumps(figures) + "\n")


def test_measure_forker_cpu_per_parse(zygote_factory: Any, driver: ParseDriver) -> None:
    parses, workers = int(os.environ.get("MEASURE_PARSES", "96")), 16
    dags = dags_folder("measure-forker-cpu")
    body = "import time\ntime.sleep(1.0)\n"  # a parse long enough that 16 workers live side by side
    paths = [write(dags, f"cpu_{i}.py", simple_dag(f"cpu_{i}") + body) for i in range(parses)]
    for limit in ("0", "2048"):
        options = {"max_workers": str(workers), "max_queued": "32", "worker_memory_limit": limit, "warm_workers": "0"}
        zygote = zygote_factory(zygote_env(**options))
        forker = zygote.status()["forker"]
        with connected(zygote) as connection:
            _parse_all(driver, connection, paths[:workers], workers)  # warm: preloads settle
            before, started = _forker_cpu(forker["pid"]), time.monotonic()
            done = _parse_all(driver, connection, paths, workers)
            cpu, wall = _forker_cpu(forker["pid"]) - before, time.monotonic() - started
        reads = zygote.status()["forker"].get("memory_reads", {})
        assert all(proc._exit_code == 0 for proc in done)
        _record(
            {
                "measure": "forker_cpu_per_parse",
                "worker_memory_limit_mib": int(limit),
                "max_workers": workers,
                "parses": parses,
                "forker_cpu_ms_per_parse": round(cpu / parses * 1000, 2),
                "forker_cpu_share": round(cpu / wall, 3),
                "wall_s": round(wall, 1),
                "memory_reads": reads,
                "dispatch_ms_p50": _dispatch_p50(connection),
            }
        )
        zygote.stop()


def _dispatch_p50(connection: Any) -> float | None:
    return _stat_p50(connection, "dispatch_ms")


def test_measure_dispatch_latency_with_and_without_the_pool(zygote_factory: Any, driver: ParseDriver) -> None:
    parses = int(os.environ.get("MEASURE_PARSES", "40"))
    dags = dags_folder("measure-dispatch")
    paths = [write(dags, f"dispatch_{i}.py", simple_dag(f"dispatch_{i}")) for i in range(parses)]
    for warm in os.environ.get("MEASURE_POOLS", "0,2,4").split(","):
        zygote = zygote_factory(zygote_env(warm_workers=warm))
        for concurrency in (1, 8):
            with connected(zygote) as connection:
                _parse_all(driver, connection, paths[:4], concurrency)  # warm: preloads settle
                done = _parse_all(driver, connection, paths, concurrency)
                assert all(proc._exit_code == 0 for proc in done)
                pooled = sum(1 for e in connection.ledger.entries if e.stats.get("pooled"))
                _record(
                    {
                        "measure": "dispatch",
                        "warm_workers": int(warm),
                        "concurrency": concurrency,
                        "parses": len(done),
                        "dispatch_ms_p50": _dispatch_p50(connection),
                        "dispatch_ms_p95": _dispatch_p(connection, 0.95),
                        "fork_ms_p50": _stat_p50(connection, "fork_ms"),
                        **_dispatch_parts(connection),
                        "pooled_share": round(pooled / max(1, len(connection.ledger.entries)), 2),
                    }
                )
        pool = zygote.status()["forker"]["pool"]
        _record(
            {
                "measure": "pool_memory",
                "warm_workers": int(warm),
                "idle": pool["idle"],
                "uss": pool["uss"],
                "pss": pool["pss"],
            }
        )
        zygote.stop()


def _dispatch_parts(connection: Any) -> dict[str, float]:
    """Dispatch split at the forker (one host, one monotonic clock): client and gateway hops to the
    forker reading the spawn, then from the hand-over (or fork) to Airflow's entrypoint in the worker."""
    to_forker, in_worker = [], []
    for entry in connection.ledger.entries:
        stats = entry.stats
        if {"dispatch_ms", "received_monotonic", "start_monotonic", "fork_ms"} <= stats.keys():
            before = stats["dispatch_ms"] - (stats["start_monotonic"] - stats["received_monotonic"]) * 1000
            to_forker.append(before)
            in_worker.append((stats["start_monotonic"] - stats["received_monotonic"]) * 1000 - stats["fork_ms"])
    if not to_forker:
        return {}
    return {
        "to_forker_ms_p50": round(statistics.median(to_forker), 2),
        "worker_start_ms_p50": round(statistics.median(in_worker), 2),
    }


def _dispatch_p(connection: Any, q: float) -> float | None:
    values = sorted(e.stats["dispatch_ms"] for e in connection.ledger.entries if "dispatch_ms" in e.stats)
    return round(values[min(len(values) - 1, int(q * len(values)))], 2) if values else None


def _stat_p50(connection: Any, key: str) -> float | None:
    values = [float(e.stats[key]) for e in connection.ledger.entries if key in e.stats]
    return round(statistics.median(values), 2) if values else None
