"""Unit tests of the bench's pure parts: statistics, corpus, advice, aggregation, memory figures, report shape."""

from __future__ import annotations

import gc
import io
import json
import re
import subprocess
import sys
import time
from argparse import Namespace
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from rich.console import Console

from zygote.bench import advice, corpus, figures, processes, report
from zygote.bench.cli import DEFAULT_APPROVED, config_from_args
from zygote.bench.figures import ALL_CATEGORIES, breakeven, compare, crossing, same_throughput
from zygote.bench.processes import BenchError, Homes, clean_environ, side_env
from zygote.bench.results import (
    ChildRecord,
    FileRecord,
    MemoryWindow,
    RoundResult,
    SideOutput,
    read_side_output,
    write_json,
)
from zygote.bench.runner import merge_peaks, side_order
from zygote.bench.sampler import Part, Peak, Sample, TreeSampler, role_of, summarize_samples
from zygote.bench.sides import child_record, ledger_record, normalized_outcome
from zygote.forker.measure import GcTimer

README = Path(__file__).resolve().parents[2] / "docs" / "bench.md"
MIB = 1024 * 1024


# --- stats ---------------------------------------------------------------------------------------


def test_bench_summarize_skips_missing_values() -> None:
    dist = figures.summarize([None, 1, 3.0, None, 2])
    assert dist == {"n": 3, "p50": 2.0, "p95": 3.0, "max": 3.0, "mean": 2.0}


def test_bench_percentiles_are_the_ones_status_reports() -> None:
    from zygote.gateway.samples import Samples

    values = [0.4, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8]
    samples = Samples()
    for value in values:
        samples.add(value)
    dist, status = figures.summarize(values), samples.summary()
    assert (dist["p50"], dist["p95"], dist["max"]) == (status["p50"], status["p95"], status["max"])
    assert figures.summarize([None]) == {"n": 0, "p50": None, "p95": None, "max": None, "mean": None}


@pytest.mark.parametrize(
    ("zygote", "stock", "expected"), [(1.0, 4.0, 0.25), (None, 1.0, None), (1.0, None, None), (1.0, 0.0, None)]
)
def test_bench_ratio(zygote: float | None, stock: float | None, expected: float | None) -> None:
    assert figures.ratio(zygote, stock) == expected


def test_bench_linear_fit() -> None:
    assert figures.linear_fit([(2, 10), (8, 40)]) == pytest.approx((0.0, 5.0))
    intercept, slope = figures.linear_fit([(1, 3), (2, 5), (3, 7)]) or (0, 0)
    assert (intercept, slope) == pytest.approx((1.0, 2.0))
    assert figures.linear_fit([(2, 1), (2, 3)]) is None


# --- corpus --------------------------------------------------------------------------------------


def test_bench_corpus_default_has_every_category(tmp_path: Path) -> None:
    spec = corpus.CorpusSpec()
    written = corpus.write_corpus(tmp_path, spec)
    assert len(written) == spec.small + spec.heavy + spec.factory + spec.variable
    by_category = {c: [p for p in written if corpus.category_of(p.name) == c] for c in corpus.CATEGORIES}
    assert all(by_category.values())
    for path in written:
        compile(path.read_text(), str(path), "exec")  # every file is valid Python
    heavy = by_category["heavy"][0].read_text()
    assert "import pandas" in heavy and "import numpy" in heavy
    assert "Variable.get" in by_category["variable"][0].read_text()
    assert f"range({spec.factory_size})" in by_category["factory"][0].read_text()


def test_bench_corpus_tiny_is_three_files_and_regeneration_replaces(tmp_path: Path) -> None:
    corpus.write_corpus(tmp_path, corpus.CorpusSpec())
    (tmp_path / "mine.py").write_text("x = 1\n")
    written = corpus.write_corpus(tmp_path, corpus.CorpusSpec.tiny())
    assert sorted(p.name for p in written) == ["factory_001.py", "small_001.py", "variable_001.py"]
    assert sorted(p.name for p in tmp_path.glob("*.py")) == [
        "factory_001.py",
        "mine.py",
        "small_001.py",
        "variable_001.py",
    ]


def test_bench_corpus_dag_ids_are_unique(tmp_path: Path) -> None:
    written = corpus.write_corpus(tmp_path, corpus.CorpusSpec(small=3, heavy=2, factory=2, variable=2))
    ids = [dag_id for p in written for dag_id in re.findall(r'"(bench_[a-z]+_\d{3})', p.read_text())]
    assert len(ids) == len(written) == len(set(ids))


def test_bench_category_of() -> None:
    assert corpus.category_of("/x/heavy_003.py") == "heavy"
    assert corpus.category_of("sub/factory_001.py") == "factory"
    assert corpus.category_of("my_dag.py") == corpus.OTHER


def test_bench_corpus_cli(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "zygote.bench.corpus", str(tmp_path), "--tiny"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "wrote 3 DAG files" in out.stdout
    assert len(list(tmp_path.glob("*.py"))) == 3


# --- advice --------------------------------------------------------------------------------------


def test_bench_advice_uses_the_zygotes_approval() -> None:
    reports = [{"kubernetes.client": 0.5, "boto3": 0.2, "zygote.gateway": 0.3, "airflow.sdk": 0.4}]
    unapproved = {s.module for s in advice.rank(reports, "kubernetes.*", passes=1)}
    approved = {s.module for s in advice.rank(reports, "kubernetes.*", passes=1, approved=True)}
    assert unapproved == {"boto3"}  # airflow and provider packages (this one too) are approved implicitly
    assert approved == {"kubernetes"}


def test_bench_package_of() -> None:
    dags = frozenset({"small_001"})
    assert advice.package_of("yaml.loader", dags) == "yaml"
    assert advice.package_of("airflow.sdk", dags) is None
    assert advice.package_of("unusual_prefix_abc_small_001", dags) is None
    assert advice.package_of("small_001", dags) is None


def test_bench_advice_ranking_groups_and_sums() -> None:
    reports = [
        {"yaml": 0.05, "yaml.loader": 0.02, "requests": 0.3, "pandas": 2.0, "airflow.models": 1.0},
        {"requests": 0.3, "requests.adapters": 0.1, "dateutil": 0.01, "pandas.io.parquet": 0.5, "tiny": 0.0001},
        {"yaml": 0.05},
    ]
    ranked = advice.rank(reports, "pandas, numpy", passes=2)
    assert [s.module for s in ranked] == ["requests", "yaml", "dateutil"]
    assert ranked[0].seconds_total == pytest.approx(0.6)
    assert ranked[0].seconds_per_pass == pytest.approx(0.3)
    assert ranked[0].parses == 2
    assert ranked[1].seconds_total == pytest.approx(0.1)  # max within a parse, not a sum of submodules
    approved = advice.rank(reports, "pandas, numpy", passes=2, approved=True)
    assert [(s.module, s.seconds_total) for s in approved] == [("pandas", 2.5)]


def test_bench_advice_limit_and_line() -> None:
    reports = [{f"mod{i}": float(i) for i in range(20)}]
    ranked = advice.rank(reports, "", passes=1, limit=3)
    assert [s.module for s in ranked] == ["mod19", "mod18", "mod17"]
    assert advice.suggested_line("pandas, numpy", ranked) == "approved_modules = pandas, numpy, mod19, mod18, mod17"
    assert advice.suggested_line("pandas", []) is None


def test_bench_advise_section() -> None:
    preload = {"pandas": {"state": "rejected", "reason": "left 1 thread(s) running after import"}}
    section = advice.advise([{"yaml": 0.2, "pandas": 1.0}], "pandas", passes=4, preload=preload)
    assert section["source"] == "ledger"
    assert section["suggested_line"] == "approved_modules = pandas, yaml"
    assert section["modules"] == [{"module": "yaml", "seconds_total": 0.2, "seconds_per_pass": 0.05, "parses": 1}]
    assert section["approved_not_preloaded"] == [
        {"module": "pandas", "seconds_total": 1.0, "seconds_per_pass": 0.25, "parses": 1, "state": "rejected",
         "reason": "left 1 thread(s) running after import"}
    ]  # fmt: skip
    assert advice.advise([], "pandas", passes=1)["source"] == "none"


# --- aggregation, memory figures ----------------------------------------------------------------


def make_round(side: str, parallelism: int, round_no: int, *, scale: float, uss: int, total_pss: int) -> RoundResult:
    files, children = [], []
    for category in corpus.CATEGORIES:
        for i in range(3):
            path = f"{category}_{i:03d}.py"
            base = 1.0 if category == "heavy" else 0.1
            files.append(FileRecord(path, category, base * scale * (1 + i), num_dags=1))
            children.append(
                ChildRecord(
                    path,
                    category,
                    "ok",
                    pid=1000 + i,
                    wall_s=base * scale,
                    uss=uss,
                    pss=uss * 2,
                    gc_s=0.002,
                    gc_gen2_s=0.0005,
                    gc_collections=3,
                    fork_ms=2.0 if side == "zygote" else None,
                    dispatch_ms=4.0 if side == "zygote" else None,
                )
            )
    output = SideOutput(side, parallelism, 0.0, 1.0, 10.0 * scale, files, children)
    return RoundResult(side, parallelism, round_no, True, None, 12.0, output, MemoryWindow(total_pss, total_pss / 2))


def make_comparison(parallelism: int, rounds: int = 3, zygote_pss: int = 300 * MIB) -> dict[str, Any]:
    stock = [
        make_round("stock", parallelism, r, scale=1.0, uss=80 * MIB, total_pss=500 * MIB) for r in range(1, rounds + 1)
    ]
    zygote = [
        make_round("zygote", parallelism, r, scale=0.05 if r > 1 else 0.5, uss=8 * MIB, total_pss=zygote_pss)
        for r in range(1, rounds + 1)
    ]
    return compare(parallelism, stock, zygote)


def test_bench_compare_cold_and_steady() -> None:
    comparison = make_comparison(2)
    ratios = comparison["ratios"]
    assert ratios["phase"] == "steady"
    assert ratios["parse_p50"] == pytest.approx(0.05)
    assert ratios["cold_parse_p50"] == pytest.approx(0.5)
    assert ratios["wall"] == pytest.approx(0.05)
    assert ratios["child_uss_p50"] == pytest.approx(0.1)
    assert ratios["total_pss_peak"] == pytest.approx(0.6)
    assert set(ratios["parse_p50_by_category"]) == set(ALL_CATEGORIES)
    assert ratios["parse_p50_by_category"]["other"] is None
    steady = comparison["stock"]["steady"]
    assert steady["rounds"] == 2 and steady["parses"] == 24
    assert comparison["stock"]["cold"]["rounds"] == 1
    assert steady["fork_ms"]["n"] == 0 and comparison["zygote"]["steady"]["fork_ms"]["p50"] == 2.0


def test_bench_single_round_has_no_steady_phase() -> None:
    comparison = make_comparison(2, rounds=1)
    assert comparison["stock"]["steady"] is None
    assert comparison["ratios"]["phase"] == "cold"
    assert comparison["ratios"]["parse_p50"] == pytest.approx(0.5)


def test_bench_failed_rounds_are_counted_not_averaged() -> None:
    bad = make_round("stock", 2, 2, scale=100.0, uss=MIB, total_pss=MIB)
    bad.ok, bad.error = False, "timed out"
    good = make_round("stock", 2, 1, scale=1.0, uss=MIB, total_pss=MIB)
    report_ = compare(2, [good, bad, make_round("stock", 2, 3, scale=1.0, uss=MIB, total_pss=MIB)], [])
    assert report_["stock"]["steady"]["round_errors"] == 1
    assert report_["stock"]["steady"]["parses"] == 12


def test_bench_same_throughput_finds_the_smallest_zygote_parallelism_as_fast_as_stock() -> None:
    # the zygote's pass is 0.05x stock's wall at every parallelism: P=1 already keeps up with stock at P=2
    by_p = {"2": make_comparison(2, zygote_pss=450 * MIB), "1": make_comparison(1, zygote_pss=350 * MIB)}
    result = same_throughput(by_p, headline=2)
    assert result["zygote_parallelism"] == 1
    assert result["stock_total_pss_peak"] == 500 * MIB and result["zygote_total_pss_peak"] == 350 * MIB
    assert result["ratio"] == pytest.approx(0.7)
    assert "matched by the zygote at parallelism 1" in result["summary"]


def test_bench_same_throughput_says_when_the_zygote_never_keeps_up() -> None:
    slow = make_comparison(2)
    for rnd in slow["zygote"]["steady"], slow["zygote"]["cold"]:
        rnd["wall_s"] = {**rnd["wall_s"], "p50": 1000.0}
    result = same_throughput({"2": slow}, headline=2)
    assert result["zygote_parallelism"] is None and result["ratio"] is None
    assert "At no measured parallelism" in result["summary"]


def test_bench_crossing() -> None:
    # stock: 100 + 100 P; zygote: 400 + 25 P -> equal at P = 4, zygote smaller above
    point, regime = crossing((100.0, 100.0), (400.0, 25.0))
    assert point == pytest.approx(4.0) and regime == "above"
    assert crossing((100.0, 10.0), (400.0, 25.0)) == (None, "never")
    assert crossing((500.0, 100.0), (400.0, 25.0)) == (None, "always")
    assert crossing((500.0, 0.0), (300.0, 0.0)) == (None, "always")
    assert crossing((100.0, 0.0), (300.0, 0.0)) == (None, "never")
    point, regime = crossing((1000.0, 10.0), (100.0, 100.0))
    assert point == pytest.approx(10.0) and regime == "below"
    assert crossing(None, (1.0, 1.0)) == (None, None)


def test_bench_breakeven_from_two_parallelisms() -> None:
    by_p = {"2": make_comparison(2, zygote_pss=600 * MIB), "8": make_comparison(8, zygote_pss=400 * MIB)}
    # stock is flat (500 MiB) here; the zygote's line falls: it breaks even between 2 and 8.
    result = breakeven(by_p)
    assert 2 < result["parallelism"] < 8
    assert "breaks even" in result["summary"] and result["zygote_smaller"] == "above"
    assert result["measured"]["8"]["zygote_smaller"] is True


def test_bench_breakeven_single_parallelism_uses_child_pss() -> None:
    result = breakeven({"2": make_comparison(2, zygote_pss=600 * MIB)})
    assert result["model"]["stock"]["per_child"] == pytest.approx(160 * MIB)
    assert result["parallelism"] is not None


# --- report shape --------------------------------------------------------------------------------


def sample_report() -> dict[str, Any]:
    by_p = {"2": make_comparison(2), "8": make_comparison(8)}
    extras = {
        "breakeven": breakeven(by_p),
        "same_throughput": same_throughput(by_p, 2),
        "advice": advice.advise([{"yaml": 0.2, "pandas": 0.4}], "pandas", 2, preload={"pandas": {"state": "rejected"}}),
        "zygote_status": {"2": None, "8": None},
    }
    return report.build_report({"errors": []}, by_p, extras, {"2": {}, "8": {}}, headline=2)


def test_bench_report_keys() -> None:
    doc = sample_report()
    assert tuple(doc) == report.TOP_LEVEL_KEYS or set(doc) == set(report.TOP_LEVEL_KEYS)
    assert set(report.RATIO_KEYS) <= set(doc["ratios"])
    for required in ("parse_p50", "parse_p95", "wall", "child_uss_p50", "total_pss_peak"):
        assert isinstance(doc["ratios"][required], float)
    for side in ("stock", "zygote"):
        assert set(doc[side]) == set(report.SIDE_KEYS)
        assert set(doc[side]["steady"]) == set(report.PHASE_KEYS)
        assert set(doc[side]["steady"]["parse_s"]) == set(report.DIST_KEYS)
    json.dumps(doc)  # serializable


def test_bench_readme_documents_every_key() -> None:
    text = README.read_text()
    keys = {*report.TOP_LEVEL_KEYS, *report.RATIO_KEYS, *report.SIDE_KEYS, *report.PHASE_KEYS, *report.DIST_KEYS}
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert not missing, f"docs/bench.md does not document: {missing}"


def test_bench_render_table() -> None:
    buffer = io.StringIO()
    report.render(sample_report(), Console(file=buffer, width=140))
    text = buffer.getvalue()
    assert "parallelism 2: steady state" in text and "parallelism 8" in text
    assert "zygote/stock" in text and "0.05x" in text
    assert "approved_modules = pandas, yaml" in text
    assert "Memory: " in text and "[zygote]" in text
    assert "Approved but not preloaded" in text and "pandas" in text
    assert "stock's also includes the manager's pre-import" in text  # issue 17: the report says so
    assert "Same throughput: " in text


def test_bench_stock_parse_time_includes_the_managers_pre_import(tmp_path: Path) -> None:
    """Stock's manager imports a file's airflow modules before forking, outside ``last_duration``."""
    from airflow.dag_processing.manager import DagFileInfo, DagFileStat

    from zygote.bench.sides import file_records, timed_pre_import

    spent: dict[str, float] = {}
    calls: list[str] = []
    pre_import = timed_pre_import(lambda path, *args, **kwargs: calls.append(path), spent)
    pre_import(str(tmp_path / "heavy_001.py"), log=None)
    assert calls == [str(tmp_path / "heavy_001.py")] and spent[str(tmp_path / "heavy_001.py")] >= 0.0

    class Manager:
        _file_stats = {
            DagFileInfo(rel_path=Path("heavy_001.py"), bundle_name="b"): DagFileStat(num_dags=1, last_duration=0.5),
            DagFileInfo(rel_path=Path("small_001.py"), bundle_name="b"): DagFileStat(num_dags=1, last_duration=0.25),
        }

    heavy, small = file_records(Manager(), {"heavy_001.py": 1.5})
    assert (heavy.path, heavy.parse_s, heavy.manager_side_s) == ("heavy_001.py", 2.0, 1.5)
    assert (small.parse_s, small.manager_side_s) == (0.25, 0.0)


# --- records, sampler, processes -----------------------------------------------------------------


@dataclass
class FakeEntry:
    request_id: str
    path: str
    outcome: str
    exit_code: int | None
    stats: dict[str, Any] = field(default_factory=dict)


def test_bench_ledger_record(tmp_path: Path) -> None:
    stats_ = {"wall_s": 0.02, "peak_uss": 5 * MIB, "peak_pss": 9 * MIB, "gc_s": 0.001, "gc_gen2_s": 0.0,
              "gc_collections": 2, "fork_ms": 1.5, "dispatch_ms": 3.0, "imports": {"yaml": 0.01, "bad": "x"}}  # fmt: skip
    record = ledger_record(FakeEntry("r1", str(tmp_path / "heavy_001.py"), "exited", 0, stats_), tmp_path)
    assert record.path == "heavy_001.py" and record.category == "heavy" and record.outcome == "ok"
    assert (record.uss, record.pss, record.fork_ms, record.dispatch_ms) == (5 * MIB, 9 * MIB, 1.5, 3.0)
    assert record.imports == {"yaml": 0.01}
    assert ledger_record(FakeEntry("r2", "small_001.py", "zygote_unavailable", None), tmp_path).uss is None


def test_bench_normalized_outcome() -> None:
    assert normalized_outcome("exited", 0) == "ok"
    assert normalized_outcome("failed", 1) == "failed"
    assert normalized_outcome("deadline", None) == "deadline"


def test_bench_stock_child_record(tmp_path: Path) -> None:
    data = {"pid": 7, "path": str(tmp_path / "small_002.py"), "outcome": "ok", "wall_s": 0.1, "uss": 1, "pss": 2,
            "gc_s": 0.0, "gc_gen2_s": 0.0, "gc_collections": 1}  # fmt: skip
    record = child_record(data, tmp_path)
    assert record is not None and record.path == "small_002.py" and record.category == "small"
    assert child_record(None, tmp_path) is None


def test_bench_gc_clock_measures_collections() -> None:
    clock = GcTimer()
    gc.callbacks.append(clock)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(clock)
    assert clock.collections >= 1 and clock.gen2_seconds > 0 and clock.seconds >= clock.gen2_seconds


def test_bench_merge_peaks_takes_the_larger() -> None:
    children = [ChildRecord("a.py", "other", "ok", pid=1, uss=10, pss=20), ChildRecord("b.py", "other", "ok")]
    merge_peaks(children, {1: Peak(uss=15, pss=5)})
    assert (children[0].uss, children[0].pss) == (15, 20)
    assert children[1].uss is None


def test_bench_side_order_alternates() -> None:
    assert side_order(1) == ("stock", "zygote")
    assert side_order(2) == ("zygote", "stock")


def test_bench_summarize_samples_window() -> None:
    samples = [Sample(float(t), pss=t * 10, uss=t, rss=t * 20, processes=2) for t in range(10)]
    window = summarize_samples(samples, 2.0, 4.0)
    assert (window.total_pss_peak, window.total_pss_mean, window.samples) == (40, 30.0, 3)
    assert summarize_samples(samples, 100.0, 200.0).samples == 10  # empty window falls back to all
    assert summarize_samples([], None, None).total_pss_peak is None


def test_bench_sampler_sees_its_own_tree() -> None:
    code = "import sys, time; x = bytearray(32 << 20); print('ready', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"  # allocated: sample now
        sampler = TreeSampler([psutil.Process().pid], interval=0.02).start()
        time.sleep(0.3)
        sampler.stop()
    finally:
        child.kill()
        child.wait()
    assert sampler.samples and sampler.samples[-1].processes >= 2
    assert sampler.peaks[child.pid].uss > 16 << 20
    window = sampler.window(None, None, parse_pids=[child.pid])
    assert window.total_pss_peak and window.total_pss_peak >= sampler.peaks[child.pid].pss
    roles = {part["pid"]: part["role"] for part in window.peak_parts}
    assert roles[psutil.Process().pid] == "manager" and roles[child.pid] == "child"
    assert sum(part["pss"] for part in window.peak_parts) == window.total_pss_peak
    assert all(part["pte"] > 0 for part in window.peak_parts)  # page tables read from /proc


def test_bench_peak_breakdown_names_every_zygote_process() -> None:
    def part(pid: int, role: str, mib: int) -> Part:
        return Part(pid, role, pss=mib * MIB, uss=mib * MIB // 2, rss=mib * MIB * 2, pte=MIB)

    low = Sample(10.0, 100 * MIB, 0, 0, 1, (part(1, "manager", 100),))
    parts = (part(1, "manager", 150), part(2, "gateway", 20), part(3, "forker", 300),
             part(4, "forker_child", 60), part(5, "forker_child", 70), part(6, "forker_child", 40))  # fmt: skip
    high = Sample(12.5, 640 * MIB, 0, 0, 6, parts)
    window = summarize_samples([low, high], 10.0, 20.0, parse_pids=[4, 5])
    assert window.peak_at_s == pytest.approx(2.5) and window.total_pss_peak == 640 * MIB
    result = RoundResult("zygote", 2, 2, True, None, 1.0, SideOutput("zygote", 2), window)
    found = figures.peak_breakdown([result])
    assert found is not None and found["round"] == 2
    assert {role: row["n"] for role, row in found["roles"].items()} == {
        "manager": 1, "gateway": 1, "forker": 1, "worker": 2, "forker_other": 1
    }  # fmt: skip
    assert found["roles"]["worker"]["pss"] == 130 * MIB and found["roles"]["worker"]["pte"] == 2 * MIB
    assert found["role_peaks"]["manager"] == 150 * MIB
    torn = Sample(13.0, 700 * MIB, 0, 0, 6, parts, torn=True)  # a fork mid-read: too high, left out
    window = summarize_samples([low, high, torn], 10.0, 20.0, parse_pids=[4, 5])
    assert (window.total_pss_peak, window.torn_samples, window.torn_pss_peak) == (640 * MIB, 1, 700 * MIB)
    assert [role_of(0, d) for d in range(3)] == ["manager", "child", "child"]
    assert [role_of(1, d) for d in range(4)] == ["gateway", "forker", "forker_child", "forker_child"]


def test_bench_stop_kills_the_whole_tree(tmp_path: Path) -> None:
    script = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    started = processes.spawn("tree", [sys.executable, "-c", script], dict(clean_environ()), tmp_path / "log")
    deadline = time.monotonic() + 10
    while not processes.descendants(started.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    family = [psutil.Process(started.pid), *processes.descendants(started.pid)]
    assert len(family) == 2
    processes.stop(started, grace=1.0)
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_bench_registry_stop_all(tmp_path: Path) -> None:
    registry = processes.Registry()
    started = [registry.spawn(f"s{i}", [sys.executable, "-c", "import time; time.sleep(60)"], dict(clean_environ()),
                              tmp_path / f"{i}.log") for i in range(2)]  # fmt: skip
    registry.stop_all()
    assert all(s.popen.poll() is not None for s in started)


def test_bench_side_output_roundtrip(tmp_path: Path) -> None:
    output = SideOutput("stock", 2, 1.0, 2.0, 1.0, [FileRecord("a.py", "other", 0.1)],
                        [ChildRecord("a.py", "other", "ok", imports={"yaml": 0.1})])  # fmt: skip
    from dataclasses import asdict

    write_json(tmp_path / "out.json", asdict(output))
    assert read_side_output(tmp_path / "out.json") == output
    assert read_side_output(tmp_path / "missing.json") is None


# --- environment, cli, zygote server helpers -----------------------------------------------------


def test_bench_side_env_is_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ZYGOTE__SOCKET", "ipc:///production/zygote.sock")
    monkeypatch.setenv("AIRFLOW_HOME", "/production")
    homes = Homes(tmp_path, tmp_path / "dags")
    stock = side_env(homes, "stock", 8, "pandas")
    zygote = side_env(homes, "zygote", 8, "pandas")
    assert stock["AIRFLOW_HOME"] == str(tmp_path / "stock")
    assert not any(k.startswith("AIRFLOW__ZYGOTE__") for k in stock)
    assert zygote["AIRFLOW__ZYGOTE__SOCKET"] == f"ipc://{tmp_path}/sock-p8/zygote.sock"
    assert zygote["AIRFLOW__ZYGOTE__FALLBACK"] == "fail"
    shared = {k: v for k, v in stock.items() if k.startswith(("AIRFLOW__CORE", "AIRFLOW__DAG_PROCESSOR"))}
    assert all(zygote[k] == v for k, v in shared.items())
    assert shared["AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES"] == "8"


def test_bench_config_defaults() -> None:
    config = config_from_args(Namespace(dags=None, rounds=3, parallelism=None, output=None, approved_modules=None,
                                        chart=None))  # fmt: skip
    assert config.parallelism == (2, 8) and config.approved_modules == DEFAULT_APPROVED == "pandas, numpy"
    assert config.timeout_for(10) > 0
    with pytest.raises(BenchError):
        config_from_args(Namespace(dags=None, rounds=0, parallelism=[2], output=None, approved_modules="",
                                   chart=None))  # fmt: skip


def test_bench_round_validation() -> None:
    from zygote.bench.runner import _not_measured, failed_outcomes

    ok = SideOutput(
        "zygote", 2, files=[FileRecord("a.py", "other", 0.1)], children=[ChildRecord("a.py", "other", "ok")]
    )
    assert _not_measured(ok) is None and failed_outcomes(ok) == {}
    crashed = SideOutput("zygote", 2, files=ok.files, children=[ChildRecord("a.py", "other", "failed")])
    assert _not_measured(crashed) is None and failed_outcomes(crashed) == {"failed": 1}
    refused = SideOutput("zygote", 2, files=ok.files, children=[ChildRecord("a.py", "other", "zygote_unavailable")])
    assert "did not parse" in (_not_measured(refused) or "")
    assert _not_measured(SideOutput("stock", 2)) == "no file was parsed"


def test_bench_chart_series_and_optional_matplotlib(tmp_path: Path) -> None:
    from zygote.bench.report import CHART_RATIOS, chart_series, write_chart

    doc = sample_report()
    series = chart_series(doc)
    assert set(series) == {"parallelism 2", "parallelism 8"}
    assert all(len(v) == len(CHART_RATIOS) for v in series.values())
    written = write_chart(doc, tmp_path / "chart.png")
    assert written == (tmp_path / "chart.png").exists()


class FlakyServer:
    """Stands in for ZygoteServer: the first start fails as if the zygote had been killed."""

    def __init__(self, *, hung: bool = False) -> None:
        self.starts, self.hung = 0, hung

    @property
    def running(self) -> bool:
        return self.hung

    def start(self) -> None:
        self.starts += 1
        raise BenchError("airflow zygote serve exited with code 0:\nlog")

    def restart(self) -> str:
        self.starts += 1
        return "restarted"


def test_bench_zygote_start_is_retried_once(tmp_path: Path) -> None:
    from zygote.bench.runner import Bench, BenchConfig

    bench = Bench(BenchConfig(None, 1, (2,), ""), Homes(tmp_path, tmp_path), processes.Registry(), 1)
    flaky = FlakyServer()
    bench.start_zygote(flaky, 2)  # type: ignore[arg-type]
    assert flaky.starts == 2 and bench.warnings and "restarted" in bench.warnings[0]
    with pytest.raises(BenchError):  # a zygote that is up but never healthy is not restarted
        bench.start_zygote(FlakyServer(hung=True), 2)  # type: ignore[arg-type]
