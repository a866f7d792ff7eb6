"""Bounded samples and percentile summaries for ``status``."""

from __future__ import annotations

from collections import deque


class Samples:
    """The last ``size`` observations of one figure; old ones fall off so memory stays flat."""

    def __init__(self, size: int = 2048) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self.count = 0

    def add(self, value: float) -> None:
        self._values.append(value)
        self.count += 1

    def summary(self) -> dict[str, float]:
        """p50, p95 and max of what is kept, plus the total count ever seen."""
        if not self._values:
            return {"count": 0}
        ordered = sorted(self._values)
        return {
            "count": self.count,
            "p50": percentile(ordered, 50),
            "p95": percentile(ordered, 95),
            "max": ordered[-1],
        }


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty list."""
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
