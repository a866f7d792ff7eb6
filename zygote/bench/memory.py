"""Memory figures across parallelism values: the break-even line and the memory for the same throughput.

Both answer the question a user decides on: how much memory does each side need to parse this folder
this fast? Development targets of the project are not part of the report (see ``README_BENCH.md``).
"""

from __future__ import annotations

import math

from zygote.bench.aggregate import headline_phase
from zygote.bench.results import Json
from zygote.bench.stats import linear_fit

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
