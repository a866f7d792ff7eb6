"""Distributions and ratios: the only arithmetic the report relies on, kept pure.

Percentiles are the zygote's own (``zygote.gateway.samples``, nearest rank), so the bench and
``airflow zygote status`` agree on what a p50 is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypedDict

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
