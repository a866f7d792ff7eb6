"""Enforcing ``worker_memory_limit`` without walking every worker's page tables every sample.

How this works: the exact USS (``smaps_rollup``) walks the page tables of a process that maps
the forker's whole heap, milliseconds a read, in the thread that forks. ``/proc/<pid>/stat`` is a
few counters. USS only grows when a page becomes the worker's alone, and (huge pages aside) each
such page arrives with a page fault: a new anonymous page or a copy-on-write copy is one fault,
a file read fault maps up to a few neighbouring pages at once (fault-around), which shows in RSS.
So from the last exact figure, ``uss + new faults * page + RSS growth`` bounds the USS from
above, and the exact figure is needed only when that bound nears the limit; each exact read
rebases the bound. What the bound cannot see (the forker or a sibling dropping its share of a
page the worker maps, a few MiB over a worker's life) is covered by reading exactly from
:data:`NEAR_LIMIT` of the limit on.
"""

from __future__ import annotations

from dataclasses import dataclass

from zygote.linux import PAGE_SIZE

NEAR_LIMIT = 0.8
"""Share of the limit from which the cheap bound no longer decides alone."""


@dataclass
class UssBound:
    """An upper bound on one worker's USS from cheap counters, rebased at each exact read.

    At the fork nothing is private to the worker: USS 0, fault counter 0 (the kernel starts a
    child's at zero). The RSS baseline is taken at the first sample.
    """

    uss: int = 0
    faults: int = 0
    rss: int | None = None

    def bound(self, faults: int, rss: int) -> int:
        baseline = rss if self.rss is None else self.rss
        return self.uss + max(0, faults - self.faults) * PAGE_SIZE + max(0, rss - baseline)

    def observe(self, faults: int, rss: int) -> None:
        """A cheap sample: only the first fixes the RSS baseline."""
        if self.rss is None:
            self.rss = rss

    def rebase(self, uss: int, faults: int, rss: int) -> None:
        """An exact USS read when the counters were ``faults`` and ``rss``."""
        self.uss, self.faults, self.rss = uss, faults, rss


def needs_exact(bound: int, limit: int) -> bool:
    """Whether the bound is too close to ``limit`` bytes to decide without the exact USS."""
    return bool(limit) and bound >= NEAR_LIMIT * limit
