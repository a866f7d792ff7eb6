"""One side, one round, in a fresh interpreter: ``python -m zygote.bench.run_side --side stock ...``.

A fresh process per round means nothing (imports, heap growth, caches) carries over from one round
or one side to the next except what a real dag-processor restart would also keep: the metadata DB and
the OS page cache. Settings come from the environment the bench built (see ``environment.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from zygote.bench.corpus import category_of
from zygote.bench.results import ChildRecord, FileRecord, SideOutput, write_json


class SideRunner(Protocol):
    """What differs between the sides: how the manager is built and where child figures come from."""

    def make_manager(self) -> Any: ...

    def children(self, manager: Any, dags_folder: Path) -> list[ChildRecord]: ...

    def manager_side_seconds(self, dags_folder: Path) -> dict[str, float]: ...


def runner_for(side: str, child_dir: Path) -> SideRunner:
    """Import only the side's own code, so stock never even imports the zygote client."""
    if side == "stock":
        from zygote.bench.stock import StockRunner

        return StockRunner(child_dir)
    from zygote.bench.zygote_side import ZygoteRunner

    return ZygoteRunner()


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


def run(side: str, child_dir: Path) -> SideOutput:
    """Build the side's manager, run it once over every file (``max_runs=1``), collect the figures."""
    parallelism = int(os.environ.get("AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES", "0"))
    output = SideOutput(side=side, parallelism=parallelism)
    runner = runner_for(side, child_dir)
    manager = runner.make_manager()
    warm_execution_api(manager)
    output.run_started, began = time.time(), time.monotonic()
    try:
        manager.run()
    finally:
        output.wall_s, output.run_ended = time.monotonic() - began, time.time()
    dags_folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    output.files = file_records(manager, runner.manager_side_seconds(dags_folder))
    output.children = runner.children(manager, dags_folder)
    return output


def main(argv: list[str] | None = None) -> int:
    """Entry point; always leaves a JSON report behind, with the error if the run failed."""
    parser = argparse.ArgumentParser(prog="python -m zygote.bench.run_side")
    parser.add_argument("--side", choices=("stock", "zygote"), required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--child-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        output = run(args.side, args.child_dir)
    except BaseException as exc:  # SystemExit from the manager's SIGTERM handler included
        output = SideOutput(side=args.side, parallelism=0, error=f"{exc!r}\n{traceback.format_exc()}")
    write_json(args.output, asdict(output))
    return 0 if output.error is None else 1


if __name__ == "__main__":
    sys.exit(main())
