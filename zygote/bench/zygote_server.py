"""The zygote the bench starts for its zygote side: ``airflow zygote serve`` as a subprocess.

One zygote per parallelism value, so every parallelism has its own cold round (preloads are learned
lazily from the first workers' imports, and no preload state file is kept between zygotes).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import structlog

from zygote.bench.environment import BenchError, airflow_cmd
from zygote.bench.procs import Registry, Started
from zygote.client import control
from zygote.config import Settings
from zygote.transport import ipc_path

log = structlog.get_logger(__name__)

START_TIMEOUT = 180.0
STATUS_TIMEOUT = 10.0


def query_status(env: dict[str, str], timeout: float = STATUS_TIMEOUT) -> dict[str, Any] | None:
    """The zygote's status through its own control client; ``None`` while it does not answer."""
    try:
        return control.query_status(Settings(socket=env["AIRFLOW__ZYGOTE__SOCKET"]), timeout_s=timeout)
    except control.ControlError:
        return None


class ZygoteServer:
    """Start, probe and stop one zygote."""

    def __init__(self, registry: Registry, env: dict[str, str], log_path: Path) -> None:
        self.registry = registry
        self.env = env
        self.log_path = log_path
        self.started: Started | None = None

    @property
    def pid(self) -> int:
        if self.started is None:
            raise BenchError("zygote not started")
        return self.started.pid

    def start(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """Start ``airflow zygote serve``; ready once it answers a status request (returns that status)."""
        self.started = self.registry.spawn("zygote", airflow_cmd("zygote", "serve"), self.env, self.log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._raise_if_exited()
            if self._socket_present() and (status := query_status(self.env)) is not None:
                log.info("bench.zygote_ready", pid=self.pid, forker=status.get("forker", {}).get("pid"))
                return status
            time.sleep(0.5)
        raise BenchError(f"the zygote was not ready within {timeout:.0f}s:\n{self.started.log_tail()}")

    def _raise_if_exited(self) -> None:
        if self.started is not None and self.started.popen.poll() is not None:
            code = self.started.popen.returncode
            raise BenchError(f"airflow zygote serve exited with code {code}:\n{self.started.log_tail()}")

    def _socket_present(self) -> bool:
        """Skip status requests until an ``ipc://`` socket file exists."""
        path = ipc_path(self.env.get("AIRFLOW__ZYGOTE__SOCKET", ""))
        return path is None or path.exists()

    @property
    def running(self) -> bool:
        return self.started is not None and self.started.popen.poll() is None

    def status(self) -> dict[str, Any] | None:
        return query_status(self.env)

    def restart(self) -> str:
        """Replace a zygote that died (or never came up); returns why, for the report's warnings.

        A zygote should never die on its own, but on a shared machine something else may signal it;
        one restart keeps the remaining rounds meaningful (the restarted zygote is cold again).
        """
        code = self.started.popen.returncode if self.started is not None else None
        tail = self.started.log_tail(5) if self.started is not None else ""
        self.stop()
        log.warning("bench.zygote_restarted", exit_code=code, log_tail=tail)
        self.start()
        return f"the zygote exited (code {code}) and was restarted; the next zygote round is cold again"

    def stop(self) -> None:
        """SIGTERM (the zygote drains, with the short drain timeout the bench set), then SIGKILL."""
        if self.started is not None:
            self.registry.stop(self.started, grace=15.0)
            self.started = None
