"""The bench's outputs: the report document (every raw figure, ratios, memory figures, advice), the
terminal table and the optional PNG chart (needs matplotlib, which is not a dependency).

The JSON keys are documented in ``docs/bench.md``; :data:`TOP_LEVEL_KEYS` and friends are the contract
the smoke test checks.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console
from rich.table import Table

from zygote.bench import advice as advice_mod
from zygote.bench.figures import ALL_CATEGORIES, breakeven, compare, headline_phase, same_throughput
from zygote.bench.processes import SIDES
from zygote.bench.results import Json, round_to_json, write_json
from zygote.bench.runner import Bench

SCHEMA_VERSION = 1
TOP_LEVEL_KEYS = (
    "schema_version", "meta", "headline_parallelism", "stock", "zygote", "ratios",
    "by_parallelism", "breakeven", "same_throughput", "advice", "zygote_status", "raw",
)  # fmt: skip
RATIO_KEYS = (
    "phase", "parse_p50", "parse_p95", "parse_max", "wall", "child_uss_p50", "child_pss_p50",
    "total_pss_peak", "total_pss_mean", "gc_s_p50", "parse_p50_by_category", "child_uss_p50_by_category",
    "cold_parse_p50", "cold_wall", "cold_total_pss_peak",
)  # fmt: skip
SIDE_KEYS = ("side", "parallelism", "rounds", "cold", "steady")
PHASE_KEYS = (
    "rounds", "round_errors", "parses", "failed_children", "import_errors", "parse_s", "parse_s_by_category",
    "manager_side_s", "child_wall_s", "wall_s", "child_uss", "child_pss", "child_uss_by_category", "child_pss_by_category",
    "total_pss_peak", "total_pss_mean", "total_uss_peak", "total_rss_peak", "gc_s", "gc_gen2_s",
    "gc_collections", "fork_ms", "dispatch_ms", "peak_breakdown",
)  # fmt: skip
DIST_KEYS = ("n", "p50", "p95", "max", "mean")
MIB = 1024 * 1024
PARSE_NOTE = (
    "Parse time is Airflow's per-file duration; stock's also includes the manager's pre-import of the "
    "airflow modules each file names ([dag_processor] parsing_pre_import_modules), which stock runs in the "
    "manager before forking and leaves out of its own figure."
)


def build_report(
    meta: Json, by_parallelism: dict[str, Json], extras: Json, raw: dict[str, Json], headline: int
) -> Json:
    """Assemble the JSON document; ``extras`` holds ``breakeven``, ``same_throughput``, ``advice``, ``zygote_status``."""
    main = by_parallelism[str(headline)]
    return {
        "schema_version": SCHEMA_VERSION,
        "meta": meta,
        "headline_parallelism": headline,
        "stock": main["stock"],
        "zygote": main["zygote"],
        "ratios": main["ratios"],
        "by_parallelism": by_parallelism,
        **extras,
        "raw": raw,
    }


def write_report(report: Json, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, report)


def _num(value: Any, scale: float, digits: int) -> str:
    return "-" if value is None else f"{float(value) / scale:.{digits}f}"


def fmt_s(value: Any) -> str:
    return _num(value, 1.0, 3)


def fmt_ms(value: Any) -> str:
    return _num(value, 1.0, 1)


def fmt_mib(value: Any) -> str:
    return _num(value, MIB, 1)


def fmt_ratio(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}x"


Row = tuple[str, Callable[[Json], Any], Callable[[Any], str], Callable[[Json], Any]]


def _dist(key: str, stat: str) -> Callable[[Json], Any]:
    return lambda phase: (phase.get(key) or {}).get(stat)


def _cat(key: str, category: str) -> Callable[[Json], Any]:
    return lambda phase: (phase.get(key) or {}).get(category, {}).get("p50")


def _plain(key: str) -> Callable[[Json], Any]:
    return lambda phase: phase.get(key)


def _r(key: str, category: str | None = None) -> Callable[[Json], Any]:
    return lambda ratios: ratios[key][category] if category else ratios.get(key)


def _none(_: Json) -> Any:
    return None


def _category_rows(present: Json, categories: tuple[str, ...], what: str, key: str, ratio_key: str) -> list[Row]:
    """Per-category rows, only for categories the corpus has."""
    fmt = fmt_s if key.startswith("parse") else fmt_mib
    return [
        (f"  {what} p50 {cat} ({'s' if fmt is fmt_s else 'MiB'})", _cat(key, cat), fmt, _r(ratio_key, cat))
        for cat in categories
        if present.get(cat, {}).get("n")
    ]


def _memory_rows() -> list[Row]:
    return [
        ("child peak PSS p50 (MiB)", _dist("child_pss", "p50"), fmt_mib, _r("child_pss_p50")),
        ("GC in child p50 (ms)", lambda p: _ms(_dist("gc_s", "p50")(p)), fmt_ms, _r("gc_s_p50")),
        ("gen-2 GC in child p95 (ms)", lambda p: _ms(_dist("gc_gen2_s", "p95")(p)), fmt_ms, _none),
        ("total PSS peak (MiB)", _plain("total_pss_peak"), fmt_mib, _r("total_pss_peak")),
        ("total PSS mean (MiB)", _plain("total_pss_mean"), fmt_mib, _r("total_pss_mean")),
        ("fork latency p50 (ms)", _dist("fork_ms", "p50"), fmt_ms, _none),
        ("dispatch to worker p50 (ms)", _dist("dispatch_ms", "p50"), fmt_ms, _none),
        ("failed parses", _plain("failed_children"), str, _none),
    ]


def table_rows(comparison: Json) -> list[Row]:
    """Rows of the per-parallelism table; categories absent from the corpus are left out."""
    present = headline_phase(comparison["stock"]).get("parse_s_by_category", {})
    return [
        ("parse p50 (s)", _dist("parse_s", "p50"), fmt_s, _r("parse_p50")),
        ("parse p95 (s)", _dist("parse_s", "p95"), fmt_s, _r("parse_p95")),
        ("parse max (s)", _dist("parse_s", "max"), fmt_s, _r("parse_max")),
        *_category_rows(present, ALL_CATEGORIES, "parse", "parse_s_by_category", "parse_p50_by_category"),
        ("  of which manager pre-import p50 (s)", _dist("manager_side_s", "p50"), fmt_s, _none),
        ("wall per round p50 (s)", _dist("wall_s", "p50"), fmt_s, _r("wall")),
        ("child peak USS p50 (MiB)", _dist("child_uss", "p50"), fmt_mib, _r("child_uss_p50")),
        *_category_rows(present, ("heavy", "small"), "child USS", "child_uss_by_category", "child_uss_p50_by_category"),
        *_memory_rows(),
    ]


def _ms(seconds: Any) -> float | None:
    return None if seconds is None else float(seconds) * 1000.0


def comparison_table(parallelism: str, comparison: Json) -> Table:
    """zygote vs stock at one parallelism, headline phase, plus the cold-round ratios."""
    ratios = comparison["ratios"]
    table = Table(title=f"parallelism {parallelism}: {ratios['phase']} state", title_justify="left")
    for name, justify in (("", "left"), ("stock", "right"), ("zygote", "right"), ("zygote/stock", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    s, z = headline_phase(comparison["stock"]), headline_phase(comparison["zygote"])
    for label, get, fmt, get_ratio in table_rows(comparison):
        table.add_row(label, fmt(get(s)), fmt(get(z)), fmt_ratio(get_ratio(ratios)))
    sc, zc = comparison["stock"]["cold"], comparison["zygote"]["cold"]
    table.add_row("cold: parse p50 (s)", fmt_s(_dist("parse_s", "p50")(sc)), fmt_s(_dist("parse_s", "p50")(zc)),
                  fmt_ratio(ratios["cold_parse_p50"]))  # fmt: skip
    table.add_row("cold: wall (s)", fmt_s(_dist("wall_s", "p50")(sc)), fmt_s(_dist("wall_s", "p50")(zc)),
                  fmt_ratio(ratios["cold_wall"]))  # fmt: skip
    return table


def print_not_preloaded(console: Console, advice: Json) -> None:
    """Approved packages the workers still imported: the zygote could not (yet) preload them."""
    rows = advice.get("approved_not_preloaded") or []
    if rows:
        console.print("Approved but not preloaded (workers still imported them):")
    for m in rows:
        why = f"{m.get('state') or 'unknown'}: {m.get('reason')}" if m.get("reason") else m.get("state") or "unknown"
        console.print(f"  {m['module']:<32} {m['seconds_per_pass']:.3f} s per pass ({why})", markup=False)


def print_advice(console: Console, advice: Json) -> None:
    """Suggested ``approved_modules`` lines, never applied."""
    print_not_preloaded(console, advice)
    modules = advice.get("modules") or []
    if not modules:
        console.print("Preload advice: no unapproved module cost measurable import time.")
        return
    console.print("Preload advice (suggestions only, nothing was approved):")
    for m in modules:
        line = f"  {m['module']:<32} {m['seconds_per_pass']:.3f} s per pass ({m['parses']} parses)"
        console.print(line, markup=False)
    console.print(f"  [zygote]\n  {advice['suggested_line']}", markup=False)


def breakdown_line(side: str, phase: Json | None) -> str:
    """One side's total PSS peak split per role: ``manager 310.2`` or ``worker 2x 96.0``, MiB, page tables apart."""
    found = (phase or {}).get("peak_breakdown")
    if not found:
        return f"  {side}: no samples"
    at = "" if found["at_s"] is None else f" at {found['at_s']:.1f} s"
    roles = ", ".join(
        f"{role} {'' if row['n'] == 1 else str(row['n']) + 'x '}{fmt_mib(row['pss'])} (USS {fmt_mib(row['uss'])}, "
        f"page tables {fmt_mib(row['pte'])})"
        for role, row in sorted(found["roles"].items(), key=lambda item: -int(item[1]["pss"]))
    )
    torn = f"; {found['torn_samples']} torn samples left out (with them: {fmt_mib(found['torn_pss_peak'])})"
    return f"  {side} (round {found['round']}{at}): {roles}{torn}"


def print_breakdown(console: Console, report: Json) -> None:
    """Where each side's total PSS peak is, per process role, at every parallelism (headline phase)."""
    for parallelism, comparison in report["by_parallelism"].items():
        console.print(f"Total PSS peak per process, MiB (parallelism {parallelism}):", markup=False)
        for side in ("stock", "zygote"):
            console.print(breakdown_line(side, headline_phase(comparison[side])), markup=False)


def render(report: Json, console: Console | None = None) -> None:
    """The terminal summary: one table per parallelism, the memory figures, advice."""
    console = console or Console()
    for parallelism, comparison in report["by_parallelism"].items():
        console.print(comparison_table(parallelism, comparison))
    print_breakdown(console, report)
    console.print(PARSE_NOTE, markup=False)
    console.print(f"Same throughput: {report['same_throughput']['summary']}", markup=False)
    console.print(f"Memory: {report['breakeven']['summary']}", markup=False)
    print_advice(console, report["advice"])


log = structlog.get_logger(__name__)

CHART_RATIOS = ("parse_p50", "parse_p95", "wall", "child_uss_p50", "child_pss_p50", "total_pss_peak")


def chart_series(report: Json) -> dict[str, list[float]]:
    """One bar series per parallelism: the zygote/stock ratios (missing ones drawn as 0)."""
    return {
        f"parallelism {p}": [float(c["ratios"].get(k) or 0.0) for k in CHART_RATIOS]
        for p, c in report["by_parallelism"].items()
    }


def write_chart(report: Json, path: Path) -> bool:
    """Draw grouped bars with a 1.0 line (parity); returns ``False`` if matplotlib is unavailable."""
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        pyplot = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        log.warning("bench.chart_skipped", reason="matplotlib is not installed", path=str(path))
        return False
    _draw(pyplot, chart_series(report), path)
    return True


def _draw(pyplot: Any, series: dict[str, list[float]], path: Path) -> None:
    """Grouped bars, one group per ratio, one bar per parallelism."""
    fig, ax = pyplot.subplots(figsize=(9, 4.5))
    width = 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series.items()):
        ax.bar([x + i * width for x in range(len(CHART_RATIOS))], values, width, label=label)
    ax.axhline(1.0, color="grey", linewidth=1, linestyle="--")
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(CHART_RATIOS))], CHART_RATIOS)
    ax.set_ylabel("zygote / stock (lower is better)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    pyplot.close(fig)


def comparisons(bench: Bench) -> dict[str, Json]:
    """``by_parallelism``: stock, zygote and ratios for every parallelism value measured."""
    return {
        str(p): compare(p, bench.results.get((p, "stock"), []), bench.results.get((p, "zygote"), []))
        for p in bench.config.parallelism
    }


def raw_rounds(bench: Bench) -> dict[str, Json]:
    """Every round's raw figures, per parallelism and side."""
    return {
        str(p): {side: [round_to_json(r) for r in bench.results.get((p, side), [])] for side in SIDES}
        for p in bench.config.parallelism
    }


def preload_advice(bench: Bench, dag_modules: frozenset[str]) -> dict[str, object]:
    """Advice from the workers' import reports (ledger), else from the zygotes' status ``import_costs``."""
    zygote_rounds = [r for p in bench.config.parallelism for r in bench.results.get((p, "zygote"), []) if r.ok]
    reports = [c.imports for r in zygote_rounds for c in r.output.children if c.imports]
    passes = len(zygote_rounds)
    approved, preload = bench.config.approved_modules, preload_states(bench.statuses.values())
    if reports:
        return advice_mod.advise(reports, approved, passes, dag_modules=dag_modules, source="ledger", preload=preload)
    status_costs = summed_import_costs(bench.statuses.values())
    reports_from_status = [status_costs] if status_costs else []
    return advice_mod.advise(
        reports_from_status, approved, passes, dag_modules=dag_modules, source="status", preload=preload
    )


def preload_states(statuses: Any) -> dict[str, Any]:
    """The zygotes' ``preload`` sections merged (the last parallelism's zygote wins on conflicts)."""
    merged: dict[str, Any] = {}
    for status in statuses:
        preload = (status or {}).get("preload")
        if isinstance(preload, Mapping):
            merged.update(preload)
    return merged


def summed_import_costs(statuses: Any) -> dict[str, float]:
    """``import_costs`` of every zygote's final status, summed."""
    total: dict[str, float] = defaultdict(float)
    for status in statuses:
        costs = (status or {}).get("import_costs")
        if isinstance(costs, Mapping):
            for module, seconds in costs.items():
                if isinstance(seconds, int | float):
                    total[str(module)] += float(seconds)
    return dict(total)


def dag_module_names(corpus: Path) -> frozenset[str]:
    """Names the DAG files themselves could be imported under; never preload candidates."""
    return frozenset(p.stem for p in corpus.rglob("*.py"))


def assemble(bench: Bench, meta: Json) -> Json:
    """The whole report document."""
    by_parallelism = comparisons(bench)
    headline = bench.config.parallelism[0]
    extras = {
        "breakeven": breakeven(by_parallelism),
        "same_throughput": same_throughput(by_parallelism, headline),
        "advice": preload_advice(bench, dag_module_names(bench.homes.corpus)),
        "zygote_status": {str(p): bench.statuses.get(p) for p in bench.config.parallelism},
    }
    return build_report(meta, by_parallelism, extras, raw_rounds(bench), headline)
