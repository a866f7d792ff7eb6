"""``airflow zygote bench``: stock vs zygote parsing on the same DAG files, interleaved round by round.

Everything runs in a short temp directory (SQLite DBs, logs, the zygote's ipc socket) removed at the
end unless the run failed or ``ZYGOTE_BENCH_KEEP=1`` is set. Every process the bench starts is
stopped before it returns, including on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import tempfile
import threading
import time
from argparse import Namespace
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from zygote import __version__
from zygote.bench.corpus import CorpusSpec, category_of, write_corpus
from zygote.bench.processes import BenchError, Homes, Registry, prepare_homes
from zygote.bench.report import assemble, render, write_chart, write_report
from zygote.bench.results import Json
from zygote.bench.runner import Bench, BenchConfig, Progress

log = structlog.get_logger(__name__)

DEFAULT_APPROVED = "pandas, numpy"


def config_from_args(args: Namespace) -> BenchConfig:
    """Validate the CLI arguments into a :class:`BenchConfig`."""
    parallelism = tuple(int(p) for p in (getattr(args, "parallelism", None) or [2, 8]))
    rounds = int(3 if getattr(args, "rounds", None) is None else args.rounds)
    if rounds < 1 or not parallelism or min(parallelism) < 1:
        raise BenchError("--rounds and every --parallelism value must be at least 1")
    approved = getattr(args, "approved_modules", None)
    return BenchConfig(
        dags=_path(getattr(args, "dags", None)),
        rounds=rounds,
        parallelism=parallelism,
        approved_modules=DEFAULT_APPROVED if approved is None else str(approved),
        output=_path(getattr(args, "output", None)),
        chart=_path(getattr(args, "chart", None)),
        keep_workdir=os.environ.get("ZYGOTE_BENCH_KEEP", "") == "1",
    )


def _path(value: Any) -> Path | None:
    return Path(value).expanduser() if value else None


def resolve_corpus(config: BenchConfig, workdir: Path) -> Path:
    """The given DAG folder, or a freshly generated default corpus when none was given."""
    if config.dags is None:
        corpus = workdir / "corpus"
        write_corpus(corpus, CorpusSpec())
        return corpus
    if not config.dags.is_dir() or not any(config.dags.rglob("*.py")):
        raise BenchError(f"--dags {config.dags} is not a folder of .py files")
    return config.dags.resolve()


def workdir_base() -> str | None:
    """``/tmp`` when usable: ``ipc://`` socket paths must stay under ~100 characters."""
    return "/tmp" if os.access("/tmp", os.W_OK) else None


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C so the ``finally`` blocks stop every subprocess."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def make_progress(total: int) -> tuple[RichProgress, Progress]:
    """A progress bar on stderr, so stdout carries only the final table."""
    bar = RichProgress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=Console(stderr=True),
    )  # fmt: skip
    return bar, Progress(bar, bar.add_task("preparing", total=total))


def metadata_block(config: BenchConfig, corpus: Path, started: float, bench: Bench) -> Json:
    """``meta``: what was run, on what, and what went wrong."""
    files = sorted(p.name for p in corpus.rglob("*.py"))
    return {
        "started_at": datetime.fromtimestamp(started, timezone.utc).isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "duration_s": time.time() - started,
        "dags": str(corpus),
        "file_count": len(files),
        "files_by_category": dict(Counter(category_of(f) for f in files)),
        "rounds": config.rounds,
        "parallelism": list(config.parallelism),
        "approved_modules": config.approved_modules,
        "sample_interval_s": config.sample_interval,
        "round_timeout_s": config.timeout_for(len(files)),
        "versions": _versions(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "errors": list(bench.errors),
        "warnings": list(bench.warnings),
    }


def _versions() -> dict[str, str]:
    try:
        airflow = metadata.version("apache-airflow")
    except metadata.PackageNotFoundError:
        airflow = "unknown"
    return {"python": platform.python_version(), "airflow": airflow, "zygote": __version__}


def execute(config: BenchConfig, workdir: Path, registry: Registry) -> Json:
    """Set up, run every round under a progress bar, and assemble the report."""
    started = time.time()
    corpus = resolve_corpus(config, workdir)
    homes = Homes(root=workdir, corpus=corpus)
    file_count = sum(1 for _ in corpus.rglob("*.py"))
    bar, progress = make_progress(1 + len(config.parallelism) * (1 + 2 * config.rounds))
    bench = Bench(config, homes, registry, file_count, progress)
    with bar:
        progress.step("creating the metadata DBs (airflow db migrate)")
        prepare_homes(homes)
        progress.step("metadata DBs ready", advance=1)
        bench.run()
    return assemble(bench, metadata_block(config, corpus, started, bench))


def publish(report: Json, config: BenchConfig) -> None:
    """Table on the terminal, JSON file, optional chart."""
    render(report, Console())
    if config.output is not None:
        write_report(report, config.output)
        log.info("bench.report_written", path=str(config.output))
    if config.chart is not None and write_chart(report, config.chart):
        log.info("bench.chart_written", path=str(config.chart))


def run_and_publish(config: BenchConfig, workdir: Path, registry: Registry) -> list[str]:
    """Run everything (SIGTERM unwinds like Ctrl-C), stop the processes, then print and write."""
    with sigterm_as_interrupt():
        report = execute(config, workdir, registry)
    registry.stop_all()
    publish(report, config)
    errors: list[str] = report["meta"]["errors"]
    return errors


def bench(args: Namespace) -> None:
    """Entry point of ``airflow zygote bench``; exits non-zero if setup failed or any round failed."""
    try:
        config = config_from_args(args)
    except BenchError as exc:
        raise SystemExit(f"zygote bench: {exc}") from None
    workdir = Path(tempfile.mkdtemp(prefix="zb-", dir=workdir_base()))
    registry = Registry()
    errors: list[str] = []
    keep = True  # logs of a run that blew up are worth keeping; success and Ctrl-C clear this
    try:
        errors = run_and_publish(config, workdir, registry)
        keep = config.keep_workdir or bool(errors)
    except BenchError as exc:
        raise SystemExit(f"zygote bench failed: {exc} (logs kept in {workdir})") from None
    except KeyboardInterrupt:
        keep = config.keep_workdir
        raise SystemExit("zygote bench interrupted; every process it started was stopped") from None
    finally:
        registry.stop_all()
        _cleanup(workdir, keep=keep)
    if errors:
        raise SystemExit(f"zygote bench: {len(errors)} round(s) failed: {'; '.join(errors)}")


def _cleanup(workdir: Path, *, keep: bool) -> None:
    if keep:
        log.warning("bench.workdir_kept", path=str(workdir), hint="logs of every round and the zygote are there")
        return
    shutil.rmtree(workdir, ignore_errors=True)
