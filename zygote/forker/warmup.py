"""Start-up of a forker generation: import the parse path, learn Airflow's lazy imports, freeze.

Airflow imports much of itself lazily during a parse (SDK definitions, serialization). To have
those in the frozen heap, the forker parses a DAG file shipped with this project in a throwaway
child and treats the Airflow modules that child imported like any approved preload candidate.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import NoReturn

from protocol import WorkerReport, frame
from zygote import linux

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

    stats.initialize(
        factory=stats_utils.get_stats_factory(),
        export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
    )
    SecretCache.init()


def run_warmup_child(report: socket.socket) -> NoReturn:
    """In a forked child: parse the warm-up DAG with Airflow's parser and report the imports."""
    baseline = frozenset(sys.modules)
    try:
        linux.close_fds_except({report.fileno()})
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        _parse_warmup_dag()
        modules = {name: 0.0 for name in list(sys.modules) if name not in baseline}
        report.sendall(frame(WorkerReport(modules=modules, gc={}, memory={})))
    except BaseException:
        os._exit(1)
    os._exit(0)


def _parse_warmup_dag() -> None:
    import structlog
    from airflow.dag_processing.processor import DagFileParseRequest, _parse_file

    request = DagFileParseRequest(
        file=str(WARMUP_DAG), bundle_path=WARMUP_DAG.parent, bundle_name="airflow-zygote-warmup"
    )
    result = _parse_file(request, structlog.get_logger("warmup"))
    if result is not None:
        result.model_dump_json()
