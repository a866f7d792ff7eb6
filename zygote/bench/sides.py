"""One side, one round, in a fresh interpreter: ``python -m zygote.bench.sides --side stock ...``.

A fresh process per round means nothing (imports, heap growth, caches) carries over from one round
or one side to the next except what a real dag-processor restart would also keep: the metadata DB and
the OS page cache; and, in steady rounds, what a long-running dag-processor keeps from its previous
pass (:meth:`StockRunner.carry_over`: stock's pre-imported modules; the zygote keeps its preloads in
the zygote itself). Settings come from the environment the bench built (``processes.side_env``).

**Stock** is Airflow's own ``DagFileProcessorManager`` forking its own ``DagFileProcessorProcess``.
Stock's manager imports every ``airflow.*`` module a DAG file names before forking its child
(``_pre_import_airflow_modules``, ``[dag_processor] parsing_pre_import_modules``). That work is part of
parsing the file, but it runs before the child's start time is taken, so ``last_duration`` leaves it
out: the stock side times it per file and the bench adds it to stock's per-file parse time. Each stock
child's target wraps Airflow's ``_parse_file_entrypoint`` with ``gc.callbacks`` timing and, just before
it returns, writes its GC totals, wall time and USS/PSS to a per-child JSON file (about a millisecond,
charged to stock, which only makes the ratios conservative).

**Zygote** is the same manager class with parse children forked by the zygote
(``ZygoteDagFileProcessorManager``); its per-child figures come from the client's ledger, i.e. from the
zygote's terminal message for each request: the zygote measures its workers from the inside exactly as
the stock wrapper does.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import structlog

from zygote.bench.corpus import category_of
from zygote.bench.results import ChildRecord, FileRecord, SideOutput, read_json_dict, write_json
from zygote.forker.measure import GcTimer


class SideRunner(Protocol):
    """What differs between the sides: how the manager is built and where child figures come from."""

    def make_manager(self) -> Any: ...

    def children(self, manager: Any, dags_folder: Path) -> list[ChildRecord]: ...

    def manager_side_seconds(self, dags_folder: Path) -> dict[str, float]: ...

    def carry_over(self, dags_folder: Path) -> None: ...


def runner_for(side: str, child_dir: Path) -> SideRunner:
    """The side's runner; stock never imports the zygote client (the zygote runner imports it lazily)."""
    return StockRunner(child_dir) if side == "stock" else ZygoteRunner()


def file_records(manager: Any, manager_side: dict[str, float]) -> list[FileRecord]:
    """Airflow's own per-file stats (``last_duration`` is what the UI and metrics call parse time) plus
    the manager-side work done for the file before its child started, which ``last_duration`` omits."""
    records = []
    for info, stat in manager._file_stats.items():
        rel = str(info.rel_path)
        before = manager_side.get(rel, 0.0)
        parse_s = None if stat.last_duration is None else stat.last_duration + before
        records.append(FileRecord(rel, category_of(rel), parse_s, stat.num_dags, stat.import_errors, before))
    return sorted(records, key=lambda r: r.path)


def warm_execution_api(manager: Any) -> None:
    """Build the manager's in-process execution API before timing (about 4 s, once per process).

    A long-running dag-processor pays this once at start-up; because the bench starts a fresh manager
    every round, it would otherwise be charged to every round, stalling whichever children happen to
    be running when the first Variable request arrives. Both sides get the same warm-up.
    """
    with contextlib.suppress(Exception):
        manager.client.variables.get("zygote_bench_warmup_missing_key")


def run(side: str, child_dir: Path, steady: bool = False) -> SideOutput:
    """Build the side's manager, run it once over every file (``max_runs=1``), collect the figures.

    ``steady``: this round stands for a pass of a dag-processor that has already run one, so the side
    first takes on, untimed, what a previous pass would have left in its manager (:meth:`carry_over`).
    """
    parallelism = int(os.environ.get("AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES", "0"))
    output = SideOutput(side=side, parallelism=parallelism)
    runner = runner_for(side, child_dir)
    manager = runner.make_manager()
    warm_execution_api(manager)
    dags_folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if steady:
        runner.carry_over(dags_folder)
    output.run_started, began = time.time(), time.monotonic()
    try:
        manager.run()
    finally:
        output.wall_s, output.run_ended = time.monotonic() - began, time.time()
    output.files = file_records(manager, runner.manager_side_seconds(dags_folder))
    output.children = runner.children(manager, dags_folder)
    return output


def main(argv: list[str] | None = None) -> int:
    """Entry point; always leaves a JSON report behind, with the error if the run failed."""
    parser = argparse.ArgumentParser(prog="python -m zygote.bench.sides")
    parser.add_argument("--side", choices=("stock", "zygote"), required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--child-dir", type=Path, required=True)
    parser.add_argument("--steady", action="store_true", help="a pass after the first (see run)")
    args = parser.parse_args(argv)
    try:
        output = run(args.side, args.child_dir, args.steady)
    except BaseException as exc:  # SystemExit from the manager's SIGTERM handler included
        output = SideOutput(side=args.side, parallelism=0, error=f"{exc!r}\n{traceback.format_exc()}")
    write_json(args.output, asdict(output))
    return 0 if output.error is None else 1


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
        self._pre_import: Callable[..., None] | None = None

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
        self._pre_import = processor_module._pre_import_airflow_modules
        processor_module._pre_import_airflow_modules = timed_pre_import(  # type: ignore[attr-defined]
            self._pre_import, self.pre_import_s
        )
        return manager_module.DagFileProcessorManager(max_runs=1)

    def carry_over(self, dags_folder: Path) -> None:
        """What a stock manager keeps from its previous pass: every module its pre-import step imported.

        A long-running dag-processor imports a file's ``airflow.*`` modules (and the SDKs they pull in)
        on its first pass and finds them in ``sys.modules`` ever after, so its later passes neither
        wait for those imports nor fork children without them. Charging the first pass's imports to
        every steady round would flatter the zygote; this is done untimed, before the pass.
        """
        assert self._pre_import is not None, "make_manager first"
        logger = structlog.get_logger("zygote.bench.carry_over")  # its warnings go to the side's log
        for path in sorted(dags_folder.rglob("*.py")):
            self._pre_import(str(path), logger)

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


class ZygoteRunner:
    """Builds the zygote-backed manager and turns its ledger into child records."""

    def make_manager(self) -> Any:
        """Same constructor as Airflow's manager; ``[zygote]`` comes from the environment."""
        from zygote.client.manager import ZygoteDagFileProcessorManager

        return ZygoteDagFileProcessorManager(max_runs=1)

    def manager_side_seconds(self, dags_folder: Path) -> dict[str, float]:
        """Nothing: the zygote client does no per-file work before dispatching a request."""
        return {}

    def carry_over(self, dags_folder: Path) -> None:
        """Nothing: what the zygote keeps between passes lives in the zygote, which outlives the round."""

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


if __name__ == "__main__":
    sys.exit(main())
