"""``DagFileProcessorProcess`` whose ``start()`` asks the zygote for a worker instead of forking.

Everything after ``start()`` is Airflow's: the process object is built exactly as
``WatchedSubprocess.start`` builds it in the parent (same constructor arguments, same pipe readers
in the manager's selector), then ``_on_child_started`` sends the ``DagFileParseRequest`` frame.
Only the tracker differs (:class:`RemoteTracker`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from airflow.callbacks.callback_requests import CallbackRequest
from airflow.dag_processing.processor import DagFileProcessorProcess

from protocol import Spawn
from zygote.client.channels import LocalChannels
from zygote.client.connection import ZygoteConnection, ZygoteUnavailable
from zygote.client.tracker import RemoteTracker


class ZygoteDagFileProcessorProcess(DagFileProcessorProcess):
    """A parse child forked by the zygote (its pid lives in the zygote's PID namespace)."""

    @classmethod
    def start_remote(
        cls,
        *,
        connection: ZygoteConnection,
        timeout: float,
        path: str | os.PathLike[str],
        bundle_path: Path,
        bundle_name: str,
        callbacks: list[CallbackRequest],
        logger: Any,
        **constructor_kwargs: Any,
    ) -> ZygoteDagFileProcessorProcess:
        """Start a remote worker; raises ``ZygoteUnavailable`` when the zygote cannot take it."""
        request_id = str(constructor_kwargs["id"])
        channels = LocalChannels.create()
        tracker = RemoteTracker(request_id, connection.signal)
        connection.ledger.open(request_id, os.fspath(path))
        spawn = Spawn(
            id=request_id,
            path=os.fspath(path),
            bundle_path=os.fspath(bundle_path),
            bundle_name=bundle_name,
            timeout=float(timeout),
            cwd=os.getcwd(),
        )
        try:
            started = connection.spawn(spawn, channels, tracker)
        except ZygoteUnavailable as exc:
            channels.close_all()
            connection.ledger.close(request_id, exc.outcome, detail=exc.detail)
            raise
        proc = cls._assemble(started.pid, channels, tracker, logger, bundle_name=bundle_name, **constructor_kwargs)
        proc.had_callbacks = bool(callbacks)
        proc._on_child_started(callbacks, path, bundle_path, bundle_name)
        return proc

    @classmethod
    def failed(
        cls, *, reason: str, logger: Any, bundle_name: str, **constructor_kwargs: Any
    ) -> ZygoteDagFileProcessorProcess:
        """``[zygote] fallback = fail``: a parse that failed at once, like a timed-out processor."""
        channels = LocalChannels.create()
        tracker = RemoteTracker(str(constructor_kwargs["id"]), lambda request_id, signum: None)
        logger.error("Parse not started: the zygote is unavailable and [zygote] fallback is 'fail'", reason=reason)
        tracker.publish_exit(1)
        channels.close_children()
        return cls._assemble(0, channels, tracker, logger, bundle_name=bundle_name, **constructor_kwargs)

    @classmethod
    def _assemble(
        cls, pid: int, channels: LocalChannels, tracker: RemoteTracker, logger: Any, **constructor_kwargs: Any
    ) -> ZygoteDagFileProcessorProcess:
        """What ``WatchedSubprocess.start`` does in the parent after ``fork()``, minus the fork."""
        proc = cls(
            pid=pid,
            stdin=channels.parent["requests"],
            process=tracker,
            process_log=logger,
            start_time=time.monotonic(),
            **constructor_kwargs,
        )
        parent = channels.parent
        proc._register_pipe_readers(parent["stdout"], parent["stderr"], parent["requests"], parent["logs"], data={})
        return proc

    @property
    def is_remote(self) -> bool:
        return isinstance(self._process, RemoteTracker)
