"""Optional PNG chart of the headline ratios (needs matplotlib, which is not a dependency)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import structlog

from zygote.bench.results import Json

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
