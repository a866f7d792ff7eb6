"""The project's stated targets, checked against a finished comparison, and the memory break-even.

A target whose figure could not be measured (e.g. no heavy files in the corpus, parallelism 8 not
run) has ``value`` and ``met`` set to ``None`` rather than being silently counted as passed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from zygote.bench.aggregate import headline_phase
from zygote.bench.results import Json
from zygote.bench.stats import linear_fit

ByParallelism = dict[str, Json]


@dataclass(frozen=True)
class Target:
    """One line of the issue's target list: ``value <= limit`` passes."""

    name: str
    description: str
    limit: float
    unit: str
    parallelism: int | None
    measure: Callable[[Json], float | None]


def _ratio(key: str, category: str | None = None) -> Callable[[Json], float | None]:
    def measure(comparison: Json) -> float | None:
        ratios = comparison["ratios"]
        value = ratios[key][category] if category else ratios[key]
        return float(value) if value is not None else None

    return measure


def _zygote(key: str, stat: str, scale: float = 1.0) -> Callable[[Json], float | None]:
    def measure(comparison: Json) -> float | None:
        value = (headline_phase(comparison["zygote"]).get(key) or {}).get(stat)
        return float(value) * scale if value is not None else None

    return measure


TARGETS: tuple[Target, ...] = (
    Target(
        "parse_p50_heavy", "parse p50, heavy-import files", 0.1, "x", None, _ratio("parse_p50_by_category", "heavy")
    ),
    Target("parse_p50_small", "parse p50, small files", 0.5, "x", None, _ratio("parse_p50_by_category", "small")),
    Target(
        "parse_p50_factory", "parse p50, dynamic factories", 0.8, "x", None, _ratio("parse_p50_by_category", "factory")
    ),
    Target(
        "child_uss_heavy", "child peak USS p50, heavy", 0.12, "x", None, _ratio("child_uss_p50_by_category", "heavy")
    ),
    Target(
        "child_uss_small", "child peak USS p50, small", 0.4, "x", None, _ratio("child_uss_p50_by_category", "small")
    ),
    Target(
        "gc_gen2_child_ms",
        "gen-2 GC time inside a zygote child (p95)",
        1.0,
        "ms",
        None,
        _zygote("gc_gen2_s", "p95", 1000.0),
    ),
    Target("total_pss_p8", "total PSS of everything, parallelism 8", 0.6, "x", 8, _ratio("total_pss_peak")),
    Target("total_pss_p2", "total PSS of everything, parallelism 2", 1.0, "x", 2, _ratio("total_pss_peak")),
    Target(
        "dispatch_p50_ms",
        "zygote dispatch p50 (request sent -> worker running)",
        10.0,
        "ms",
        None,
        _zygote("dispatch_ms", "p50"),
    ),
)


def check_targets(by_parallelism: ByParallelism, headline: int) -> list[Json]:
    """Evaluate every target at its own parallelism, or at the headline parallelism."""
    results = []
    for target in TARGETS:
        parallelism = target.parallelism or headline
        comparison = by_parallelism.get(str(parallelism))
        value = target.measure(comparison) if comparison else None
        results.append(
            {
                "name": target.name,
                "description": target.description,
                "limit": target.limit,
                "unit": target.unit,
                "parallelism": parallelism,
                "value": value,
                "met": None if value is None else value <= target.limit,
            }
        )
    return results


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
