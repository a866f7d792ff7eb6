"""From raw rounds to the figures the report shows: per-side summaries and zygote/stock ratios.

Pure functions over :class:`RoundResult` lists, so they are unit-testable without running anything.
The first round of each side is "cold" (fresh zygote, empty preload set, cold page cache for the
DAG files); every later round is "steady". Ratios use steady state when there is one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from zygote.bench.corpus import CATEGORIES, OTHER, PROVIDER_GROUPS
from zygote.bench.results import ChildRecord, FileRecord, Json, RoundResult
from zygote.bench.stats import Dist, ratio, summarize

ALL_CATEGORIES: tuple[str, ...] = (*CATEGORIES, *PROVIDER_GROUPS, OTHER)


def _by_category(records: Iterable[ChildRecord | FileRecord], value: Callable[[Any], Any]) -> dict[str, Dist]:
    """One distribution per category, every category present (empty ones have ``n == 0``)."""
    items = list(records)
    return {cat: summarize(value(r) for r in items if r.category == cat) for cat in ALL_CATEGORIES}


def _peak(values: Iterable[float | int | None]) -> int | None:
    present = [int(v) for v in values if v is not None]
    return max(present) if present else None


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def phase_summary(rounds: list[RoundResult]) -> Json:
    """Every distribution of one phase (cold or steady) of one side; failed rounds are only counted."""
    good = [r for r in rounds if r.ok]
    files = [f for r in good for f in r.output.files]
    kids = [c for r in good for c in r.output.children]
    return {
        "rounds": len(good),
        "round_errors": len(rounds) - len(good),
        "parses": len(files),
        "failed_children": sum(1 for c in kids if c.outcome != "ok"),
        "import_errors": sum(f.import_errors for f in files),
        "parse_s": summarize(f.parse_s for f in files),
        "parse_s_by_category": _by_category(files, lambda f: f.parse_s),
        "manager_side_s": summarize(f.manager_side_s for f in files),
        "child_wall_s": summarize(c.wall_s for c in kids),
        "wall_s": summarize(r.output.wall_s for r in good),
        **_memory_summary(good, kids),
        "gc_s": summarize(c.gc_s for c in kids),
        "gc_gen2_s": summarize(c.gc_gen2_s for c in kids),
        "gc_collections": summarize(c.gc_collections for c in kids),
        "fork_ms": summarize(c.fork_ms for c in kids),
        "dispatch_ms": summarize(c.dispatch_ms for c in kids),
    }


def _memory_summary(good: list[RoundResult], kids: list[ChildRecord]) -> Json:
    return {
        "child_uss": summarize(c.uss for c in kids),
        "child_pss": summarize(c.pss for c in kids),
        "child_uss_by_category": _by_category(kids, lambda c: c.uss),
        "child_pss_by_category": _by_category(kids, lambda c: c.pss),
        "total_pss_peak": _peak(r.memory.total_pss_peak for r in good),
        "total_pss_mean": _mean([r.memory.total_pss_mean for r in good]),
        "total_uss_peak": _peak(r.memory.total_uss_peak for r in good),
        "total_rss_peak": _peak(r.memory.total_rss_peak for r in good),
    }


def side_report(side: str, parallelism: int, rounds: list[RoundResult]) -> Json:
    """Cold (first round) and steady (the rest, ``None`` with a single round) summaries of one side."""
    ordered = sorted(rounds, key=lambda r: r.round)
    return {
        "side": side,
        "parallelism": parallelism,
        "rounds": len(ordered),
        "cold": phase_summary(ordered[:1]),
        "steady": phase_summary(ordered[1:]) if len(ordered) > 1 else None,
    }


def headline_phase(report: Json) -> Json:
    """Steady state when measured, else the cold round."""
    phase: Json = report["steady"] if report.get("steady") else report["cold"]
    return phase


def _stat(phase: Json, key: str, stat: str) -> float | None:
    dist = phase.get(key) or {}
    value = dist.get(stat)
    return float(value) if value is not None else None


def _cat_stat(phase: Json, key: str, category: str) -> float | None:
    value = (phase.get(key) or {}).get(category, {}).get("p50")
    return float(value) if value is not None else None


def ratios(stock: Json, zygote: Json) -> Json:
    """zygote/stock for every headline figure (``None`` where a side has no data)."""
    s, z = headline_phase(stock), headline_phase(zygote)
    sc, zc = stock["cold"], zygote["cold"]
    return {
        "phase": "steady" if stock.get("steady") and zygote.get("steady") else "cold",
        "parse_p50": ratio(_stat(z, "parse_s", "p50"), _stat(s, "parse_s", "p50")),
        "parse_p95": ratio(_stat(z, "parse_s", "p95"), _stat(s, "parse_s", "p95")),
        "parse_max": ratio(_stat(z, "parse_s", "max"), _stat(s, "parse_s", "max")),
        "wall": ratio(_stat(z, "wall_s", "p50"), _stat(s, "wall_s", "p50")),
        "child_uss_p50": ratio(_stat(z, "child_uss", "p50"), _stat(s, "child_uss", "p50")),
        "child_pss_p50": ratio(_stat(z, "child_pss", "p50"), _stat(s, "child_pss", "p50")),
        "total_pss_peak": ratio(z.get("total_pss_peak"), s.get("total_pss_peak")),
        "total_pss_mean": ratio(z.get("total_pss_mean"), s.get("total_pss_mean")),
        "gc_s_p50": ratio(_stat(z, "gc_s", "p50"), _stat(s, "gc_s", "p50")),
        "parse_p50_by_category": _category_ratios(z, s, "parse_s_by_category"),
        "child_uss_p50_by_category": _category_ratios(z, s, "child_uss_by_category"),
        "cold_parse_p50": ratio(_stat(zc, "parse_s", "p50"), _stat(sc, "parse_s", "p50")),
        "cold_wall": ratio(_stat(zc, "wall_s", "p50"), _stat(sc, "wall_s", "p50")),
        "cold_total_pss_peak": ratio(zc.get("total_pss_peak"), sc.get("total_pss_peak")),
    }


def _category_ratios(z: Json, s: Json, key: str) -> dict[str, float | None]:
    return {cat: ratio(_cat_stat(z, key, cat), _cat_stat(s, key, cat)) for cat in ALL_CATEGORIES}


def compare(parallelism: int, stock_rounds: list[RoundResult], zygote_rounds: list[RoundResult]) -> Json:
    """``{"stock", "zygote", "ratios"}`` for one parallelism value."""
    stock = side_report("stock", parallelism, stock_rounds)
    zygote = side_report("zygote", parallelism, zygote_rounds)
    return {"stock": stock, "zygote": zygote, "ratios": ratios(stock, zygote)}
