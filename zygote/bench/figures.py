"""From raw rounds to the figures the report shows: distributions, per-side summaries, zygote/stock
ratios, and the memory figures across parallelism values.

Pure functions over :class:`RoundResult` lists, so they are unit-testable without running anything.
Percentiles are the zygote's own (``zygote.gateway.samples``, nearest rank), so the bench and
``airflow zygote status`` agree on what a p50 is. The first round of each side is "cold" (fresh zygote,
empty preload set, cold page cache for the DAG files); every later round is "steady". Ratios use steady
state when there is one.

The memory figures answer the question a user decides on: how much memory does each side need to parse
this folder this fast (``same_throughput``), and from which parallelism the zygote's own processes are
paid back (``breakeven``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypedDict

from zygote.bench.corpus import CATEGORIES, OTHER, PROVIDER_GROUPS
from zygote.bench.results import ChildRecord, FileRecord, Json, RoundResult
from zygote.gateway.samples import percentile


class Dist(TypedDict):
    """Summary of one distribution; every figure is ``None`` when there were no values."""

    n: int
    p50: float | None
    p95: float | None
    max: float | None
    mean: float | None


def summarize(values: Iterable[float | int | None]) -> Dist:
    """p50/p95/max/mean of the values that are present; missing measurements are skipped."""
    present = sorted(float(v) for v in values if v is not None)
    if not present:
        return Dist(n=0, p50=None, p95=None, max=None, mean=None)
    return Dist(
        n=len(present),
        p50=percentile(present, 50),
        p95=percentile(present, 95),
        max=max(present),
        mean=sum(present) / len(present),
    )


def ratio(zygote: float | None, stock: float | None) -> float | None:
    """zygote/stock, or ``None`` when either side is missing or stock is zero (no meaningful ratio)."""
    if zygote is None or stock is None or stock == 0:
        return None
    return zygote / stock


def linear_fit(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares ``(intercept, slope)``; ``None`` unless at least two distinct x values exist."""
    xs = [x for x, _ in points]
    if len(set(xs)) < 2:
        return None
    mean_x = sum(xs) / len(xs)
    mean_y = sum(y for _, y in points) / len(points)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx
    return mean_y - slope * mean_x, slope


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
        "peak_breakdown": peak_breakdown(good),
    }


BREAKDOWN_KEYS = ("pss", "uss", "rss", "pte")


def peak_breakdown(good: list[RoundResult]) -> Json | None:
    """Who held the memory at the highest total PSS peak of these rounds: sums per role (see the sampler).

    ``at_s`` is when the peak came, seconds after the manager's run started, so both sides' peaks can be
    checked for being sampled at comparable moments; ``role_peaks`` is each role's own peak over that
    round, which need not coincide with the total's. ``torn_pss_peak`` is the peak had the samples
    torn by a fork or an exit (see the sampler) been counted, ``torn_samples`` how many were left out.
    """
    rounds = [r for r in good if r.memory.total_pss_peak is not None]
    if not rounds:
        return None
    top = max(rounds, key=lambda r: r.memory.total_pss_peak or 0)
    roles: dict[str, Json] = {}
    for part in top.memory.peak_parts:
        row = roles.setdefault(part["role"], {"n": 0, **dict.fromkeys(BREAKDOWN_KEYS, 0)})
        row["n"] += 1
        for key in BREAKDOWN_KEYS:
            row[key] += part.get(key, 0)
    return {
        "round": top.round,
        "at_s": top.memory.peak_at_s,
        "roles": roles,
        "role_peaks": top.memory.role_peaks,
        "torn_samples": sum(r.memory.torn_samples for r in rounds),
        "torn_pss_peak": _peak(r.memory.torn_pss_peak for r in rounds),
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


ByParallelism = dict[str, Json]
MIB = 1024 * 1024


def _figure(comparison: Json, side: str, key: str) -> float | None:
    value = headline_phase(comparison[side]).get(key)
    if isinstance(value, dict):
        value = value.get("p50")
    return None if value is None else float(value)


def same_throughput(by_parallelism: ByParallelism, headline: int) -> Json:
    """The zygote's smallest measured parallelism whose pass is as fast as stock's at ``headline``, and
    the total PSS of each side there: the memory each needs for the same throughput.

    Only measured points count (no extrapolation): run ``--parallelism 2 1`` to learn whether one zygote
    worker keeps up with two stock children.
    """
    stock = by_parallelism.get(str(headline))
    target = None if stock is None else _figure(stock, "stock", "wall_s")
    match = None
    if target is not None:
        for parallelism in sorted(int(p) for p in by_parallelism):
            wall = _figure(by_parallelism[str(parallelism)], "zygote", "wall_s")
            if wall is not None and wall <= target:
                match = parallelism
                break
    stock_pss = None if stock is None else _figure(stock, "stock", "total_pss_peak")
    zygote_pss = None if match is None else _figure(by_parallelism[str(match)], "zygote", "total_pss_peak")
    ratio = None if stock_pss in (None, 0.0) or zygote_pss is None else zygote_pss / stock_pss  # type: ignore[operator]
    return {
        "stock_parallelism": headline,
        "stock_wall_s": target,
        "stock_total_pss_peak": stock_pss,
        "zygote_parallelism": match,
        "zygote_wall_s": None if match is None else _figure(by_parallelism[str(match)], "zygote", "wall_s"),
        "zygote_total_pss_peak": zygote_pss,
        "ratio": ratio,
        "summary": _throughput_summary(headline, target, match, stock_pss, zygote_pss),
    }


def _throughput_summary(
    headline: int, target: float | None, match: int | None, stock_pss: float | None, zygote_pss: float | None
) -> str:
    if target is None:
        return "No stock pass was measured, so there is no throughput to match."
    if match is None or stock_pss is None or zygote_pss is None:
        return (
            f"At no measured parallelism did the zygote pass the folder as fast as stock at parallelism {headline} "
            f"({target:.1f} s)."
        )
    return (
        f"Stock's pass at parallelism {headline} ({target:.1f} s) is matched by the zygote at parallelism {match}: "
        f"{zygote_pss / MIB:.0f} MiB total PSS against stock's {stock_pss / MIB:.0f} MiB."
    )


def _line(by_parallelism: ByParallelism, side: str) -> tuple[float, float] | None:
    """``total_pss_peak = fixed + per_child * parallelism`` for one side, from the measurements.

    With two or more parallelism values it is a least-squares fit; with one, the per-child term is
    the side's child PSS p50 (what each extra parse slot adds) and the fixed term what remains.
    """
    points = []
    for key, comparison in by_parallelism.items():
        total = headline_phase(comparison[side]).get("total_pss_peak")
        if total is not None:
            points.append((float(key), float(total)))
    fit = linear_fit(points)
    if fit is not None or len(points) != 1:
        return fit
    parallelism, total = points[0]
    child = (headline_phase(by_parallelism[str(int(parallelism))][side]).get("child_pss") or {}).get("p50")
    return None if child is None else (total - child * parallelism, float(child))


Line = tuple[float, float]


def breakeven(by_parallelism: ByParallelism) -> Json:
    """Where the zygote's fixed cost (gateway + forker) is paid back by smaller parse children."""
    stock, zygote = _line(by_parallelism, "stock"), _line(by_parallelism, "zygote")
    measured = {key: _measured_point(c) for key, c in by_parallelism.items()}
    model = {"stock": _model(stock), "zygote": _model(zygote)}
    point, regime = crossing(stock, zygote)
    return {
        "measured": measured,
        "model": model,
        "parallelism": point,
        "zygote_smaller": regime,
        "summary": _summary(point, regime),
    }


def _measured_point(comparison: Json) -> Json:
    stock = headline_phase(comparison["stock"]).get("total_pss_peak")
    zygote = headline_phase(comparison["zygote"]).get("total_pss_peak")
    smaller = None if stock is None or zygote is None else zygote <= stock
    return {
        "stock": stock,
        "zygote": zygote,
        "ratio": comparison["ratios"]["total_pss_peak"],
        "zygote_smaller": smaller,
    }


def _model(line: Line | None) -> Json | None:
    return None if line is None else {"fixed": line[0], "per_child": line[1]}


def crossing(stock: Line | None, zygote: Line | None) -> tuple[float | None, str | None]:
    """Where ``zygote(P) == stock(P)`` and on which side of it the zygote uses less memory.

    The regime is ``above`` (the usual case: smaller children pay back the zygote's fixed cost from
    the crossing up), ``below``, ``always``, ``never``, or ``None`` when a line is missing.
    """
    if stock is None or zygote is None:
        return None, None
    fixed_gap, slope_gap = zygote[0] - stock[0], stock[1] - zygote[1]
    if slope_gap == 0:
        return None, "always" if fixed_gap <= 0 else "never"
    point = fixed_gap / slope_gap
    if point <= 1.0:
        return None, "always" if slope_gap > 0 else "never"
    return point, "above" if slope_gap > 0 else "below"


def _summary(point: float | None, regime: str | None) -> str:
    if regime is None:
        return "Not enough memory samples to say where the zygote breaks even."
    if regime == "always":
        return "The zygote uses less total PSS than stock at every parallelism."
    if regime == "never":
        return "The zygote uses more total PSS than stock at every parallelism: its own memory is never paid back."
    if regime == "above":
        return (
            f"The zygote breaks even on total PSS at parallelism ~{point:.1f}: from {math.ceil(point or 0)} parse "
            "processes up it uses less memory than stock, below that its own gateway and forker cost more."
        )
    return f"The zygote uses less total PSS than stock only below parallelism ~{point:.1f}."
