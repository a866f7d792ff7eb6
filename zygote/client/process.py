"""``DagFileProcessorProcess`` whose ``start()`` asks the zygote for a worker instead of forking.

Everything after ``start()`` is Airflow's: the process object is built exactly as
``WatchedSubprocess.start`` builds it in the parent (same constructor arguments, same pipe readers
in the manager's selector), then ``_on_child_started`` builds the ``DagFileParseRequest`` frame: a copy goes to the
zygote with the request (it waits in the gateway for the worker) and the frame itself waits in the
local socketpair, where a local child reads it if the zygote refuses. ``start_remote`` never waits for the
fork: the tracker (:class:`RemoteTracker`) learns the pid and the exit status later.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any, cast

from airflow.callbacks.callback_requests import CallbackRequest
from airflow.dag_processing.processor import DagFileProcessorProcess

from protocol import Spawn
from zygote.client.channels import LocalChannels
from zygote.client.connection import ZygoteConnection
from zygote.client.tracker import RemoteTracker


class _FrameRecorder:
    """Stands in for ``stdin`` while Airflow builds the first frame, so the frame can go ahead of the worker."""

    def __init__(self) -> None:
        self.data = bytearray()

    def sendall(self, data: bytes) -> None:
        self.data += data


class ZygoteDagFileProcessorProcess(DagFileProcessorProcess):
    """A parse child forked by the zygote (its pid lives in the zygote's PID namespace), or a local one if it refused."""

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
        """Hand the file to the zygote and return at once; raises ``ZygoteUnavailable`` if it cannot take it now.

        The worker's pid, output and exit arrive later through the relay. A refusal that arrives
        after this returned ends in a local child on the same channels (``fallback = local``).
        """
        request_id = str(constructor_kwargs["id"])
        admission = connection.admit()
        if not admission.remote:
            raise connection.refused(request_id, os.fspath(path), admission)
        channels = LocalChannels.create()
        tracker = RemoteTracker(request_id, connection.signal)
        spawn = Spawn(
            id=request_id,
            path=os.fspath(path),
            bundle_path=os.fspath(bundle_path),
            bundle_name=bundle_name,
            timeout=float(timeout),
            cwd=os.getcwd(),
        )
        proc = cls._assemble(0, channels, tracker, logger, bundle_name=bundle_name, **constructor_kwargs)
        proc.had_callbacks = bool(callbacks)
        proc.kept_callbacks = list(callbacks)
        tracker.watch_pid(proc._learn_pid)
        first_frame = proc._first_frame(callbacks, path, bundle_path, bundle_name)
        connection.submit(spawn, channels, tracker, first_input=first_frame)
        try:
            proc.stdin.sendall(first_frame)  # where stock writes it: a local child taking over reads it here
        except OSError:
            # The relay may end the request before this write (a refusal in the same instant, under
            # ``fallback = fail``): it publishes the exit before closing the sockets, so a broken
            # pipe here with an exit published is that ending, already recorded, not a fault.
            if not tracker.exited:
                raise
        return proc

    @classmethod
    def not_started(
        cls, *, reason: str, logger: Any, bundle_name: str, callbacks: list[CallbackRequest], **constructor_kwargs: Any
    ) -> ZygoteDagFileProcessorProcess:
        """``[zygote] fallback = fail`` and the zygote cannot take it now: ends at once, retried later.

        Not a parse: the manager keeps the file's callbacks and its last parse time
        (:meth:`ZygoteDagFileProcessorManager.handle_parsing_result`), so DAGs never go stale.
        """
        channels = LocalChannels.create()
        tracker = RemoteTracker(str(constructor_kwargs["id"]), lambda request_id, signum: None)
        logger.warning(
            "Parse not started: the zygote cannot take it now and [zygote] fallback is 'fail'", reason=reason
        )
        tracker.publish_not_started()
        channels.close_children()
        proc = cls._assemble(0, channels, tracker, logger, bundle_name=bundle_name, **constructor_kwargs)
        proc.had_callbacks = bool(callbacks)
        proc.kept_callbacks = list(callbacks)
        return proc

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

    kept_callbacks: list[CallbackRequest]
    """The callbacks this parse was given, so a parse that never ran can hand them back."""

    def _first_frame(self, *on_child_started: Any) -> bytes:
        """The bytes Airflow's ``_on_child_started`` writes (its ``DagFileParseRequest``), built by Airflow."""
        stdin, recorder = self.stdin, _FrameRecorder()
        self.stdin = cast("socket.socket", recorder)
        try:
            self._on_child_started(*on_child_started)
        finally:
            self.stdin = stdin
        return bytes(recorder.data)

    def _learn_pid(self, pid: int) -> None:
        self.pid = pid

    @property
    def is_remote(self) -> bool:
        return isinstance(self._process, RemoteTracker) and not self._process.is_local

    @property
    def lost(self) -> bool:
        """Started, then lost with the zygote before any result arrived: nothing was learnt of the file.

        Airflow would count it as a parse that found no DAG, and a DAG whose last good parse is older
        than ``stale_dag_threshold`` at that moment would be deactivated for an outage, not for its file.
        """
        return isinstance(self._process, RemoteTracker) and self._process.lost and self.parsing_result is None

    @property
    def never_ran(self) -> bool:
        """True for a parse the zygote could not take under ``fallback = fail``: not a parse at all."""
        return isinstance(self._process, RemoteTracker) and self._process.not_started
