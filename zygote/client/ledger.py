"""Every parse request the client makes ends in exactly one recorded outcome, in bounded memory.

Outcomes: the zygote's ``exited`` outcomes (``protocol.Outcome``: ``exited``, ``failed``,
``signaled``, ``killed``, ``deadline``, ``memory_limit``, ...), or a typed error code
(``protocol.ErrorCode``: ``overloaded``, ``not_ready``, ``rejected_path``, ``fork_refused``,
``fork_failed``, ``forker_lost``, ``shutting_down``, ...), or ``zygote_unavailable`` (the session
was down or went silent). A request refused before its worker started is then parsed by a local
child (``fallback = local``) or not at all (``fallback = fail``); its entry keeps the refusal.

The dag-processor lives for months, so the ledger keeps per-outcome counters forever and only a
window of the most recent entries (each carries the worker's stats, ~2 KB). Tests and the bench
opt into a larger window (``Ledger(window=None)`` keeps everything).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

DEFAULT_WINDOW = 256
"""Recent entries kept by default: enough to look at the last loop of a large DAG folder."""


@dataclass
class LedgerEntry:
    request_id: str
    path: str
    outcome: str = ""
    exit_code: int | None = None
    detail: str = ""
    stats: dict[str, Any] = field(default_factory=dict)


class LedgerError(Exception):
    """A request was opened twice or closed twice: a bug in the client."""


class Ledger:
    """Thread-safe: the manager thread opens an entry, the relay thread usually closes it."""

    def __init__(self, window: int | None = DEFAULT_WINDOW) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, LedgerEntry] = {}
        self._recent: deque[LedgerEntry] = deque(maxlen=window)
        self._counts: Counter[str] = Counter()

    def open(self, request_id: str, path: str) -> None:
        with self._lock:
            if request_id in self._open:
                raise LedgerError(f"request {request_id} opened twice")
            self._open[request_id] = LedgerEntry(request_id, path)

    def close(
        self,
        request_id: str,
        outcome: str,
        *,
        exit_code: int | None = None,
        detail: str = "",
        stats: dict[str, Any] | None = None,
    ) -> None:
        with self._lock:
            entry = self._open.pop(request_id, None)
            if entry is None:
                raise LedgerError(f"request {request_id} closed twice or never opened")
            entry.outcome, entry.exit_code, entry.detail = outcome, exit_code, detail
            entry.stats = stats or {}
            self._recent.append(entry)
            self._counts[outcome] += 1

    def record(self, request_id: str, path: str, outcome: str, detail: str = "") -> None:
        """A request decided at once (never sent): opened and closed in one step."""
        self.open(request_id, path)
        self.close(request_id, outcome, detail=detail)

    @property
    def entries(self) -> list[LedgerEntry]:
        """The most recent closed entries, oldest first (at most ``window``)."""
        with self._lock:
            return list(self._recent)

    @property
    def open_ids(self) -> list[str]:
        with self._lock:
            return list(self._open)

    def counts(self) -> dict[str, int]:
        """Outcome -> how many requests ended so, since the start (not only the window)."""
        with self._lock:
            return dict(self._counts)
