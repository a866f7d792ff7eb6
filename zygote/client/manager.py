"""``DagFileProcessorManager`` with parse children from the zygote.

What differs from Airflow's: ``_create_process`` (ask the zygote; it decides at once and never
waits for a fork; fall back per ``[zygote] fallback``), ``end`` (stock ``end()`` kills local
pids, which for remote workers is meaningless or, worse, hits an unrelated local process),
``before_run`` (the first handshake runs while bundles are prepared) and
``handle_parsing_result`` (under ``fallback = fail`` a parse the zygote could not take is "not
now": its callbacks wait for the next attempt; neither it nor a parse the zygote lost counts as a
parse, so an outage never makes DAGs stale). The rest of the loop (file queue, DB writes, callbacks, timeouts, stats) is
Airflow's.

Metrics hook points (issue 16): per parse, where the relay closes a ledger entry
(``Relay.finish``/``Relay.refuse``: outcome, dispatch_ms, stats); per session, where the session
changes state (``Session._move``) and where fallbacks are counted (``FallbackNotes.counts``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import attrs
from airflow.configuration import conf
from airflow.dag_processing.manager import DagFileInfo, DagFileProcessorManager
from airflow.dag_processing.processor import DagFileProcessorProcess
from airflow.utils.process_utils import kill_child_processes_by_pids
from uuid6 import uuid7

from zygote.client.connection import ZygoteConnection, ZygoteUnavailable
from zygote.client.ledger import Ledger
from zygote.client.process import ZygoteDagFileProcessorProcess
from zygote.config import Settings, load_settings
from zygote.logs import get_logger

log = get_logger(__name__)


@attrs.define(kw_only=True)
class ZygoteDagFileProcessorManager(DagFileProcessorManager):
    settings: Settings = attrs.field(factory=load_settings)
    ledger: Ledger = attrs.field(factory=Ledger)
    """Bounded by default; the bench and tests pass ``Ledger(window=None)`` to keep every entry."""
    _connection: ZygoteConnection | None = attrs.field(default=None, init=False)

    def before_run(self) -> None:
        super().before_run()  # configures Airflow's Stats first: the session's first metrics are not lost
        self.zygote_connection().wait_ready(self.settings.connect_timeout)

    def _create_process(self, dag_file: DagFileInfo) -> DagFileProcessorProcess:
        logger, logger_filehandle = self._get_logger_for_dag_file(dag_file)
        kwargs: dict[str, Any] = {
            "id": uuid7(),
            "path": dag_file.absolute_path,
            "bundle_path": cast("Path", dag_file.bundle_path),
            "bundle_name": dag_file.bundle_name,
            "dag_file_rel_path": str(dag_file.rel_path),
            "callbacks": self._callback_to_execute.pop(dag_file, []),
            "selector": self.selector,
            "logger": logger,
            "logger_filehandle": logger_filehandle,
            "subprocess_logs_to_stdout": conf.get("logging", "dag_processor_log_target") == "stdout",
            "client": self.client,
        }
        return self._start_process(kwargs)

    def _start_process(self, kwargs: dict[str, Any]) -> DagFileProcessorProcess:
        try:
            return ZygoteDagFileProcessorProcess.start_remote(
                connection=self.zygote_connection(), timeout=float(self.processor_timeout), **kwargs
            )
        except ZygoteUnavailable as exc:
            return self._fall_back(kwargs, exc)

    def _fall_back(self, kwargs: dict[str, Any], exc: ZygoteUnavailable) -> DagFileProcessorProcess:
        fallback = self.settings.fallback
        self.zygote_connection().metrics.parse_bypassed(exc.outcome, fallback)
        if self.zygote_connection().notes.first(exc.outcome):
            log.warning("zygote.unavailable", reason=str(exc), fallback=fallback)
        if fallback == "fail":
            kwargs.pop("path")
            kwargs.pop("bundle_path")
            return ZygoteDagFileProcessorProcess.not_started(reason=str(exc), **kwargs)
        return DagFileProcessorProcess.start(**kwargs)

    def handle_parsing_result(self, file: DagFileInfo, proc: DagFileProcessorProcess, **kwargs: Any) -> None:
        """Neither a parse that never ran nor one the zygote lost touches the file's stats.

        Stock counts a parse without a result as a parse that found no DAG: its finish time is
        what ``deactivate_stale_dags`` compares with each DAG's last parse, so one lost parse of a
        file whose last good parse was ``stale_dag_threshold`` ago (a slow file, a loaded machine)
        would mark its DAGs stale. A parse that never ran also hands its callbacks back; a lost one
        does not (they may have run: never re-run side effects).
        """
        if isinstance(proc, ZygoteDagFileProcessorProcess) and proc.never_ran:
            if proc.kept_callbacks:
                self._callback_to_execute[file] = proc.kept_callbacks + self._callback_to_execute.get(file, [])
            return
        if isinstance(proc, ZygoteDagFileProcessorProcess) and proc.lost:
            return
        super().handle_parsing_result(file, proc, **kwargs)

    def zygote_connection(self) -> ZygoteConnection:
        """Created on first use: after any daemonizing fork, inside the process that parses."""
        if self._connection is None:
            self._connection = ZygoteConnection(self.settings, self.ledger)
        return self._connection

    def end(self) -> None:
        """Kill local children by pid (fallbacks and late local takeovers); remote workers through the zygote."""
        local = [p.pid for p in self._processors.values() if not getattr(p, "is_remote", False) and p.pid]
        if local:
            kill_child_processes_by_pids(local)
        if self._connection is not None:
            self._connection.close()
            self._connection = None
