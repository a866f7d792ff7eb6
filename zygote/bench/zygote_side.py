"""The zygote side: the same manager, with parse children forked by the zygote (``ZygoteDagFileProcessorManager``).

The per-child figures come from the client's ledger, i.e. from the zygote's terminal message for each
request; the zygote measures its workers from the inside exactly as the stock wrapper does.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zygote.bench.corpus import category_of
from zygote.bench.results import ChildRecord
from zygote.bench.stock import relative_path


class ZygoteRunner:
    """Builds the zygote-backed manager and turns its ledger into child records."""

    def make_manager(self) -> Any:
        """Same constructor as Airflow's manager; ``[zygote]`` comes from the environment."""
        from zygote.client.manager import ZygoteDagFileProcessorManager

        return ZygoteDagFileProcessorManager(max_runs=1)

    def manager_side_seconds(self, dags_folder: Path) -> dict[str, float]:
        """Nothing: the zygote client does no per-file work before dispatching a request."""
        return {}

    def children(self, manager: Any, dags_folder: Path) -> list[ChildRecord]:
        """One record per ledger entry."""
        ledger = getattr(manager, "ledger", None)
        return [ledger_record(entry, dags_folder) for entry in getattr(ledger, "entries", [])]


def ledger_record(entry: Any, dags_folder: Path) -> ChildRecord:
    """Map a ledger entry (``path``, ``outcome``, ``exit_code``, ``stats``) to the common record."""
    stats: Mapping[str, Any] = getattr(entry, "stats", None) or {}
    rel = relative_path(str(entry.path), dags_folder)
    return ChildRecord(
        path=rel,
        category=category_of(rel),
        outcome=normalized_outcome(str(entry.outcome), entry.exit_code),
        pid=_int(stats.get("pid")),
        exit_code=entry.exit_code,
        wall_s=_float(stats.get("wall_s")),
        uss=_int(stats.get("peak_uss")),
        pss=_int(stats.get("peak_pss")),
        gc_s=_float(stats.get("gc_s")),
        gc_gen2_s=_float(stats.get("gc_gen2_s")),
        gc_collections=_int(stats.get("gc_collections")),
        fork_ms=_float(stats.get("fork_ms")),
        dispatch_ms=_float(stats.get("dispatch_ms")),
        imports=import_report(stats.get("imports")),
    )


def normalized_outcome(outcome: str, exit_code: int | None) -> str:
    """``ok`` for a worker that exited 0 (the zygote calls it ``exited``), else the zygote's own name."""
    return "ok" if outcome in ("exited", "ok") and not exit_code else outcome


def import_report(value: Any) -> dict[str, float]:
    """The worker's ``imports`` map, tolerating a missing or malformed one."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k): float(v) for k, v in value.items() if isinstance(v, int | float)}


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None
