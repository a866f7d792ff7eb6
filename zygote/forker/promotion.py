"""Which verified preloads are worth holding in the forker, and when a promotion round may start.

How this works: every worker report is one parse; for each approved module in it the forker
counts the parse and adds the import time the worker measured (inclusive of nested imports).
A module's **value** is what holding it saves the average parse: the share of parses that
imported it times its mean import time. Its **cost** is what holding it adds to every parse:
the memory its import added in the probe child (beyond a 1 MiB noise floor) times
``[zygote] preload_cost_per_mib`` (a bigger forker forks slower, every worker maps and faults
more of it, and ``sys.modules``-proportional work grows with it). A verified module is promoted
when its value is at least its cost. Modules the operator named (``preload_modules``), the
warm-up parse's Airflow imports and what the state file says a previous generation held are
promoted without this test: they were chosen already.

The share counts at least :data:`MIN_PARSES` parses, so the first parse of a cold pass does not
make everything it imported look universal. Promotions come in **rounds**: one probe pass over
everything pending, then one import-and-freeze, at most one round per ``preload_interval``
seconds, so a cold pass over a new folder is not slowed by a freeze per module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_PARSES = 10
"""The share of parses that imported a module is counted over at least this many parses."""
NOISE_FLOOR_BYTES = 2**20
"""Memory a probe measures below this is RSS noise (page and arena granularity), priced at zero."""


@dataclass
class Usage:
    """How often workers imported one module, and how long it took them."""

    parses: int = 0
    import_s: float = 0.0

    def add(self, seconds: float) -> None:
        self.parses += 1
        self.import_s += max(0.0, seconds)

    @property
    def mean_import_s(self) -> float:
        return self.import_s / self.parses if self.parses else 0.0


@dataclass(frozen=True)
class Worth:
    """A module's value and cost per parse, in milliseconds, and the verdict."""

    saves_ms: float
    costs_ms: float

    @property
    def promote(self) -> bool:
        return self.saves_ms >= self.costs_ms

    def explain(self) -> str:
        verb = "saves" if self.promote else "would save"
        return f"{verb} {self.saves_ms:.2f} ms a parse, costs {self.costs_ms:.2f} ms"


def judge(usage: Usage, total_parses: int, memory_delta: int, cost_per_mib_ms: float) -> Worth:
    """The value (share of parses x mean import time) against the cost (memory x price)."""
    share = usage.parses / max(total_parses, MIN_PARSES)
    saves_ms = share * usage.mean_import_s * 1000
    costs_ms = max(0, memory_delta - NOISE_FLOOR_BYTES) / 2**20 * cost_per_mib_ms
    return Worth(saves_ms, costs_ms)


class RoundClock:
    """At most one promotion round per ``interval_s``: the first may start at once."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.last_end = -math.inf
        self.rounds = 0

    def due_at(self) -> float:
        return self.last_end + self.interval_s

    def is_due(self, now: float) -> bool:
        return now >= self.due_at()

    def ended(self, now: float) -> None:
        self.last_end = now
        self.rounds += 1
