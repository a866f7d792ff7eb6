"""A ``ProcessTracker`` for a worker that lives in the zygote's PID namespace.

Airflow's supervisor only ever asks a tracker for ``pid``, ``send_signal`` and ``wait``. Here the
pid is informational (never signalled or inspected locally), signals travel to the zygote, and the
exit code is published by the relay once every byte of the worker's output is in the local
sockets. A signal after the exit is a no-op, as with a reaped local child.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import psutil
from airflow.sdk.execution_time.supervisor import ProcessTracker

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
        self._send_signal = send_signal
        self._exit_code: int | None = None
        self._exited = threading.Event()

    @property
    def pid(self) -> int:
        return self.remote_pid

    def send_signal(self, s: signal.Signals) -> None:
        if not self._exited.is_set():
            self._send_signal(self.request_id, int(s))

    def wait(self, timeout: float | None) -> int:
        if not self._exited.wait(timeout):
            raise psutil.TimeoutExpired(timeout or 0, pid=self.remote_pid)
        assert self._exit_code is not None
        return self._exit_code

    def publish_exit(self, exit_code: int) -> None:
        """Called by the relay after the worker's output reached the local sockets."""
        self._exit_code = as_airflow_exit_code(exit_code)
        self._exited.set()

    @property
    def exited(self) -> bool:
        return self._exited.is_set()
