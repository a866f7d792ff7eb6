"""A zygote-backed dag-processor and a stock one parsing identical DAG folders at the same time.

Throughput under a fault is compared with stock's over the *same* wall-clock window: on a shared,
loaded machine that is the only fair "healthy run" (both sides feel the same CPU contention). The
figures are printed and appended to ``bench-results/faults.jsonl`` for the report.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fault_home import FaultHome
from processes import DagProcessor, HealthSampler, rate

FIGURES = Path(__file__).resolve().parents[2] / "bench-results" / "faults.jsonl"


@dataclass
class Window:
    name: str
    start: float
    end: float
    zygote_rate: float
    stock_rate: float
    worst_heartbeat_age: float
    files_parsed: int
    files: int

    @property
    def ratio(self) -> float:
        return self.zygote_rate / self.stock_rate if self.stock_rate else 0.0


@dataclass
class SideBySide:
    zygote_home: FaultHome
    stock_home: FaultHome
    zygote_side: DagProcessor
    stock_side: DagProcessor
    health: HealthSampler
    files: list[str]

    def measure(self, name: str, start: float, end: float) -> Window:
        parsed = {p.file for p in self.zygote_home.parses_between(start, end)}
        window = Window(
            name=name,
            start=start,
            end=end,
            zygote_rate=rate(self.zygote_home, start, end),
            stock_rate=rate(self.stock_home, start, end),
            worst_heartbeat_age=self.health.worst(start, end),
            files_parsed=len(parsed & set(self.files)),
            files=len(self.files),
        )
        record(
            "throughput",
            window=name,
            seconds=round(end - start, 1),
            zygote_per_s=round(window.zygote_rate, 2),
            stock_per_s=round(window.stock_rate, 2),
            ratio=round(window.ratio, 2),
            worst_heartbeat_age_s=round(window.worst_heartbeat_age, 1),
            files_parsed=f"{window.files_parsed}/{window.files}",
        )
        return window


def record(kind: str, **figures: Any) -> None:
    line = json.dumps({"kind": kind, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures})
    print(line)
    FIGURES.parent.mkdir(exist_ok=True)
    with FIGURES.open("a") as out:
        out.write(line + "\n")
