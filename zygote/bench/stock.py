"""The stock side: Airflow's own ``DagFileProcessorManager`` forking its own ``DagFileProcessorProcess``.

Stock's manager imports every ``airflow.*`` module a DAG file names before forking its child
(``_pre_import_airflow_modules``, ``[dag_processor] parsing_pre_import_modules``). That work is part of
parsing the file, but it runs before the child's start time is taken, so ``last_duration`` leaves it out.
The stock side times it per file and the bench adds it to stock's per-file parse time.

The other change is instrumentation inside each parse child: the child's target wraps Airflow's
``_parse_file_entrypoint`` with ``gc.callbacks`` timing and, just before it returns, writes its GC
totals, wall time and USS/PSS to a per-child JSON file. The zygote reports the same figures for its
workers, so both sides are measured from the inside the same way. The extra work (one smaps read and a
small file write, about a millisecond) is charged to stock, which only makes the ratios conservative.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from zygote.bench.corpus import category_of
from zygote.bench.results import ChildRecord, read_json_dict
from zygote.forker.measure import GcTimer

log = structlog.get_logger(__name__)


def measured_entrypoint(path: str, child_dir: str) -> None:
    """Target of a stock parse child: Airflow's entrypoint, timed, then a report file."""
    from airflow.dag_processing.processor import _parse_file_entrypoint

    clock = GcTimer()  # the same clock the zygote's workers use
    clock.install()
    began = time.perf_counter()
    outcome = "error"
    try:
        _parse_file_entrypoint()
        outcome = "ok"
    finally:
        gc.callbacks.remove(clock)
        _write_child_report(Path(child_dir), path, outcome, time.perf_counter() - began, clock)


def _write_child_report(child_dir: Path, path: str, outcome: str, wall_s: float, clock: GcTimer) -> None:
    """Dump this child's figures; never raise, the parse result matters more than the measurement."""
    try:
        import psutil

        memory = psutil.Process().memory_full_info()
        report = {
            "pid": os.getpid(),
            "path": path,
            "outcome": outcome,
            "wall_s": wall_s,
            "uss": int(memory.uss),
            "pss": int(getattr(memory, "pss", memory.uss)),
            "gc_s": clock.seconds,
            "gc_gen2_s": clock.gen2_seconds,
            "gc_collections": clock.collections,
        }
        (child_dir / f"{os.getpid()}.json").write_text(json.dumps(report), encoding="utf-8")
    except Exception:
        pass


def measured_process_class(child_dir: Path) -> type[Any]:
    """A ``DagFileProcessorProcess`` subclass whose children run :func:`measured_entrypoint`."""
    from airflow.dag_processing.processor import DagFileProcessorProcess

    class MeasuredDagFileProcessorProcess(DagFileProcessorProcess):  # type: ignore[misc]
        """Forks exactly like Airflow's class; only the child's target is wrapped."""

        @classmethod
        def start(cls, *, path: str | os.PathLike[str], **kwargs: Any) -> Any:  # type: ignore[override]
            kwargs["target"] = functools.partial(measured_entrypoint, os.fspath(path), str(child_dir))
            return super().start(path=path, **kwargs)

    return MeasuredDagFileProcessorProcess


def timed_pre_import(original: Callable[..., None], spent: dict[str, float]) -> Callable[..., None]:
    """Airflow's manager-side pre-import, unchanged, with its duration added to ``spent[path]``."""

    @functools.wraps(original)
    def pre_import(file_path: str, *args: Any, **kwargs: Any) -> None:
        began = time.perf_counter()
        try:
            original(file_path, *args, **kwargs)
        finally:
            spent[file_path] = spent.get(file_path, 0.0) + time.perf_counter() - began

    return pre_import


class StockRunner:
    """Builds the stock manager and reads back its children's reports."""

    def __init__(self, child_dir: Path) -> None:
        self.child_dir = child_dir
        self.pre_import_s: dict[str, float] = {}

    def make_manager(self) -> Any:
        """Airflow's manager, with its module-level processor class swapped for the measured one.

        ``DagFileProcessorManager._create_process`` looks the class up in its module at call time;
        swapping that one name keeps every other line of Airflow's code path untouched. This runs in
        the stock side's own subprocess, so nothing else ever sees the swap.
        """
        from airflow.dag_processing import manager as manager_module
        from airflow.dag_processing import processor as processor_module

        self.child_dir.mkdir(parents=True, exist_ok=True)
        manager_module.DagFileProcessorProcess = measured_process_class(self.child_dir)  # type: ignore[attr-defined]
        processor_module._pre_import_airflow_modules = timed_pre_import(  # type: ignore[attr-defined]
            processor_module._pre_import_airflow_modules, self.pre_import_s
        )
        return manager_module.DagFileProcessorManager(max_runs=1)

    def manager_side_seconds(self, dags_folder: Path) -> dict[str, float]:
        """Pre-import time per file (relative path), spent in the manager before each fork."""
        return {relative_path(path, dags_folder): seconds for path, seconds in self.pre_import_s.items()}

    def children(self, manager: Any, dags_folder: Path) -> list[ChildRecord]:
        """One record per child report file (a child killed before writing one is simply absent)."""
        records = [child_record(read_json_dict(p), dags_folder) for p in sorted(self.child_dir.glob("*.json"))]
        return [r for r in records if r is not None]


def child_record(data: dict[str, Any] | None, dags_folder: Path) -> ChildRecord | None:
    """Turn a stock child's report into the common record shape."""
    if not data or "path" not in data:
        return None
    rel = relative_path(str(data["path"]), dags_folder)
    return ChildRecord(
        path=rel,
        category=category_of(rel),
        outcome=str(data.get("outcome", "unknown")),
        pid=data.get("pid"),
        wall_s=data.get("wall_s"),
        uss=data.get("uss"),
        pss=data.get("pss"),
        gc_s=data.get("gc_s"),
        gc_gen2_s=data.get("gc_gen2_s"),
        gc_collections=data.get("gc_collections"),
    )


def relative_path(path: str, dags_folder: Path) -> str:
    """Path relative to the DAGs folder when inside it, so both sides name files identically."""
    try:
        return str(Path(path).resolve().relative_to(dags_folder.resolve()))
    except ValueError:
        return path
