"""A ``ProcessTracker`` for a parse child the zygote forks, or a local one if the zygote refuses.

Airflow's supervisor only ever asks a tracker for ``pid``, ``send_signal`` and ``wait``. A remote
worker's pid arrives after ``_create_process`` returned and is informational (never signalled or
inspected locally); signals travel to the zygote, and the exit code is published by the relay
once every byte of the worker's output is in the local sockets. A signal after the exit is a
no-op, as with a reaped local child. When the zygote refuses the request before forking, the relay
starts a local child on the same channels and the tracker delegates to it (:meth:`go_local`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import psutil
from airflow.sdk.execution_time.supervisor import ProcessTracker, PsutilTracker

try:
    from psutil._psposix import negsig_to_enum
except ImportError:  # pragma: no cover - older psutil
    negsig_to_enum = None


def as_airflow_exit_code(exit_code: int) -> int:
    """Negative codes as psutil's ``Negsignal`` enum, so Airflow's "terminated by signal" logs match."""
    if exit_code < 0 and negsig_to_enum is not None:
        result: int = negsig_to_enum(exit_code)
        return result
    return exit_code


class RemoteTracker(ProcessTracker):
    ProcessNotFound = psutil.NoSuchProcess
    TimeoutExpired = psutil.TimeoutExpired

    def __init__(self, request_id: str, send_signal: Callable[[str, int], None]) -> None:
        self.request_id = request_id
        self.remote_pid = 0
        self.not_started = False
        """The parse never ran (``fallback = fail``): not a parse, the file is retried later."""
        self.lost = False
        """The parse started, then the zygote went away before its end: says nothing of the file."""
        self.signalled: int | None = None
        self._send_signal = send_signal
        self._on_pid: Callable[[int], None] | None = None
        self._local: PsutilTracker | None = None
        self._lock = threading.Lock()
        self._exit_code: int | None = None
        self._exited = threading.Event()

    @property
    def is_local(self) -> bool:
        """A local child took over after the zygote refused the request."""
        return self._local is not None

    @property
    def pid(self) -> int:
        return self._local.pid if self._local is not None else self.remote_pid

    def watch_pid(self, on_pid: Callable[[int], None]) -> None:
        """Tell the process object its pid once known (it arrives after ``_create_process``)."""
        self._on_pid = on_pid
        if self.pid:
            on_pid(self.pid)

    def set_remote_pid(self, pid: int) -> None:
        self.remote_pid = pid
        if self._on_pid is not None:
            self._on_pid(pid)

    def send_signal(self, s: signal.Signals) -> None:
        with self._lock:
            local = self._local
            if local is None and not self._exited.is_set():
                self.signalled = int(s)
                self._send_signal(self.request_id, int(s))
        if local is not None:
            local.send_signal(s)

    def go_local(self, start: Callable[[], int]) -> bool:
        """The zygote refused before forking: ``start`` a local child on the same channels.

        False (nothing started) when Airflow already signalled the parse: it was being killed.
        """
        with self._lock:
            if self.signalled is not None or self._exited.is_set():
                return False
            pid = start()
            self._local = PsutilTracker(psutil.Process(pid))
        if self._on_pid is not None:
            self._on_pid(pid)
        return True

    def wait(self, timeout: float | None) -> int:
        local = self._local
        if local is not None:
            return local.wait(timeout)
        if not self._exited.wait(timeout):
            local = self._local
            if local is not None:
                return local.wait(0)
            raise psutil.TimeoutExpired(timeout or 0, pid=self.remote_pid)
        assert self._exit_code is not None
        return self._exit_code

    def publish_not_started(self) -> None:
        """``fallback = fail`` and the zygote cannot take it now: ends at once, not as a parse."""
        self.not_started = True
        self.publish_exit(1)

    def publish_lost(self) -> None:
        """A started parse the zygote lost (it or its forker died, the session ended): a failure, not the file's."""
        self.lost = True
        self.publish_exit(1)

    def publish_exit(self, exit_code: int) -> None:
        """Called by the relay after the worker's output reached the local sockets."""
        self._exit_code = as_airflow_exit_code(exit_code)
        self._exited.set()

    @property
    def exited(self) -> bool:
        return self._exited.is_set()
