"""Smoke test of ``airflow zygote bench``: three tiny files, one round, parallelism 2, every JSON key.

This runs the real thing (two SQLite DBs, a real zygote, both managers), so it takes a minute or
two; it is the only place the benchmark runs under ``make test``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zygote.bench.corpus import CorpusSpec, write_corpus
from zygote.bench.report import DIST_KEYS, PHASE_KEYS, RATIO_KEYS, SIDE_KEYS, TOP_LEVEL_KEYS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REQUIRED_RATIOS = ("parse_p50", "parse_p95", "wall", "child_uss_p50", "total_pss_peak")


def bench_env(home: Path) -> dict[str, str]:
    """The test's own ``AIRFLOW_HOME`` for the bench's parent process; no inherited Airflow config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    return env


@pytest.fixture(scope="module")
def bench_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    pytest.importorskip("zygote.client.manager", reason="the zygote client (ZygoteDagFileProcessorManager) is needed")
    root = tmp_path_factory.mktemp("bench")
    dags, output = root / "dags", root / "bench.json"
    write_corpus(dags, CorpusSpec.tiny())
    cmd = [sys.executable, "-m", "airflow", "zygote", "bench", "--dags", str(dags), "--rounds", "1",
           "--parallelism", "2", "--output", str(output)]  # fmt: skip
    done = subprocess.run(cmd, env=bench_env(root / "home"), capture_output=True, text=True, timeout=840, check=False)
    assert done.returncode == 0, f"bench failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert "zygote/stock" in done.stdout
    data = json.loads(output.read_text())
    assert isinstance(data, dict)
    return data


def test_bench_smoke_top_level_keys(bench_report: dict[str, object]) -> None:
    assert set(TOP_LEVEL_KEYS) <= set(bench_report)
    assert bench_report["headline_parallelism"] == 2


def test_bench_smoke_ratios(bench_report: dict[str, object]) -> None:
    ratios = bench_report["ratios"]
    assert isinstance(ratios, dict)
    assert set(RATIO_KEYS) <= set(ratios)
    for key in REQUIRED_RATIOS:
        assert isinstance(ratios[key], float) and ratios[key] > 0, key


def test_bench_smoke_sides(bench_report: dict[str, object]) -> None:
    for side in ("stock", "zygote"):
        report = bench_report[side]
        assert isinstance(report, dict)
        assert set(SIDE_KEYS) <= set(report)
        cold = report["cold"]
        assert set(PHASE_KEYS) <= set(cold)
        assert report["steady"] is None  # one round: cold only
        assert cold["parses"] == 3 and cold["round_errors"] == 0 and cold["failed_children"] == 0
        for key in ("parse_s", "child_uss", "child_pss", "wall_s", "gc_s"):
            assert set(DIST_KEYS) <= set(cold[key]) and cold[key]["n"] > 0, (side, key)
        assert cold["total_pss_peak"] > 0


def test_bench_smoke_zygote_figures(bench_report: dict[str, object]) -> None:
    cold = bench_report["zygote"]["cold"]  # type: ignore[index]
    assert cold["fork_ms"]["n"] == 3 and cold["dispatch_ms"]["n"] == 3


def test_bench_smoke_sections(bench_report: dict[str, object]) -> None:
    assert set(bench_report["by_parallelism"]) == {"2"}  # type: ignore[arg-type]
    assert {"measured", "model", "parallelism", "zygote_smaller", "summary"} <= set(bench_report["breakeven"])  # type: ignore[arg-type]
    assert {"stock_parallelism", "zygote_parallelism", "ratio", "summary"} <= set(bench_report["same_throughput"])  # type: ignore[arg-type]
    advice = bench_report["advice"]
    assert {"source", "modules", "suggested_line", "note"} <= set(advice)  # type: ignore[arg-type]
    raw = bench_report["raw"]["2"]  # type: ignore[index]
    assert len(raw["stock"]) == 1 and len(raw["zygote"]) == 1
    meta = bench_report["meta"]
    assert meta["errors"] == [] and meta["file_count"] == 3  # type: ignore[index]
