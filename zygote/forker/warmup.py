"""Start-up of a forker generation: import the parse path, learn Airflow's lazy imports, freeze.

Airflow imports much of itself lazily during a parse (SDK definitions, serialization). To have
those in the frozen heap, the forker parses a DAG file shipped with this project in a throwaway
child and treats the Airflow modules that child imported like any approved preload candidate.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from protocol import WorkerReport, frame
from zygote import linux
from zygote.forker.children import fork_child
from zygote.forker.frames import ChildReader, reap_blocking
from zygote.forker.measure import ModuleBaseline
from zygote.logs import get_logger

log = get_logger(__name__)

WARMUP_DAG = Path(__file__).resolve().parent / "warmup_dag.py"


def import_parse_path() -> None:
    """Import what every parse needs and set up process-wide state as the manager does before forking."""
    from airflow._shared.observability.metrics import stats
    from airflow.configuration import conf
    from airflow.dag_processing import processor  # noqa: F401  (the parse entrypoint and its imports)
    from airflow.observability.metrics import stats_utils
    from airflow.sdk import SecretCache
    from airflow.sdk.execution_time import comms, supervisor, task_runner  # noqa: F401
    from airflow.serialization import serialized_objects  # noqa: F401

    from zygote.forker.quiet_metrics import silence_metrics

    stats.initialize(
        factory=stats_utils.get_stats_factory(),
        export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
    )
    SecretCache.init()
    silence_metrics()


def run_warmup(timeout_s: float) -> list[str]:
    """Parse the warm-up DAG in a child; the modules it imported. A child over ``timeout_s`` is killed.

    A cluster policy or plugin doing network I/O without a timeout must not hang start-up: what
    the child reported by then is used, and the generation starts without the rest.
    """
    report_r, report_w = socket.socketpair()
    try:
        pid = fork_child(lambda: _warmup_body(report_w), {report_w.fileno()}, quiet=True)
    finally:
        report_w.close()
    reader = ChildReader(report_r)
    messages = reader.read_until_eof(time.monotonic() + timeout_s)
    reader.close()
    if reader.open:  # no EOF by the deadline
        log.warning("forker.warmup_timeout", timeout_s=timeout_s)
    linux.kill_quietly(pid)
    reap_blocking(pid)
    return [name for msg in messages if isinstance(msg, WorkerReport) for name in msg.modules]


def _warmup_body(report: socket.socket) -> int:
    baseline = ModuleBaseline()
    _parse_warmup_dag()
    modules = {name: 0.0 for name, _ in baseline.imported_since()}
    report.sendall(frame(WorkerReport(modules=modules, gc={}, memory={})))
    return 0


def _parse_warmup_dag() -> None:
    import structlog
    from airflow.dag_processing.processor import DagFileParseRequest, _parse_file

    request = DagFileParseRequest(
        file=str(WARMUP_DAG), bundle_path=WARMUP_DAG.parent, bundle_name="airflow-zygote-warmup"
    )
    result = _parse_file(request, structlog.get_logger("warmup"))
    if result is not None:
        result.model_dump_json()
