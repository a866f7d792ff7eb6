"""Every parse request the client makes ends in exactly one recorded outcome.

Outcomes: the zygote's ``exited`` outcomes (``exited``, ``failed``, ``signaled``, ``killed``,
``deadline``, ``memory_limit``, ...), or a typed error: ``zygote_unavailable``, ``overloaded``,
``rejected_path``, ``fork_refused``, ``forker_lost``, ``shutting_down``, ``version_mismatch``,
``config_mismatch``, ``internal``; plus ``fallback_local`` for files parsed by Airflow's own
subprocess because the zygote could not take them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


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
    """Thread-safe (the relay thread closes what the manager thread opened)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, LedgerEntry] = {}
        self.entries: list[LedgerEntry] = []

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
            self.entries.append(entry)

    @property
    def open_ids(self) -> list[str]:
        with self._lock:
            return list(self._open)

    def counts(self) -> dict[str, int]:
        with self._lock:
            counts: dict[str, int] = {}
            for entry in self.entries:
                counts[entry.outcome] = counts.get(entry.outcome, 0) + 1
            return counts
