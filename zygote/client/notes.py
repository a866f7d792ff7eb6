"""One fallback warning per outage and per reason kind, plus counters for metrics.

An outage is a state change: once the zygote starts a worker again (:meth:`FallbackNotes.available`,
called on ``started``; a welcome alone proves no forker is ready) the next refusal of any kind warns again, so "unavailable, available, unavailable" warns twice.
While the zygote stays available, a per-request refusal kind (``rejected_path``, ``fork_failed``,
...) warns once, then only counts: a zygote that is up but refuses some files stays visible.
"""

from __future__ import annotations

import threading
from collections import Counter

OUTAGE_KINDS = frozenset({"zygote_unavailable", "not_ready", "overloaded", "shutting_down", "forker_lost"})
"""Refusals that mean the zygote as a whole cannot take requests now (not this one file)."""


class FallbackNotes:
    """Thread-safe: the manager thread and the relay thread both refuse requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._outage = False
        self.counts: Counter[str] = Counter()

    def first(self, kind: str) -> bool:
        """Count one refusal of ``kind``; True when it is the first of its kind in this outage."""
        with self._lock:
            self.counts[kind] += 1
            self._outage = self._outage or kind in OUTAGE_KINDS
            if kind in self._warned:
                return False
            self._warned.add(kind)
            return True

    def available(self) -> None:
        """The zygote started a worker: the outage, if any, is over."""
        if not self._outage:
            return
        with self._lock:
            self._outage = False
            self._warned.clear()
