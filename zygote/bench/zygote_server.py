"""The zygote the bench starts for its zygote side: ``airflow zygote serve`` as a subprocess.

One zygote per parallelism value, so every parallelism has its own cold round (preloads are learned
lazily from the first workers' imports, and no preload state file is kept between zygotes).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import structlog

from zygote.bench.environment import BenchError, airflow_cmd
from zygote.bench.procs import Registry, Started

log = structlog.get_logger(__name__)

START_TIMEOUT = 180.0
STATUS_TIMEOUT = 60.0


def ipc_path(socket: str) -> Path | None:
    """Filesystem path of an ``ipc://`` endpoint (``None`` for other transports)."""
    return Path(socket.removeprefix("ipc://")) if socket.startswith("ipc://") else None


def query_status(env: dict[str, str], timeout: float = STATUS_TIMEOUT) -> dict[str, Any] | None:
    """``airflow zygote status --json``; ``None`` unless it exits 0 with a JSON object."""
    try:
        done = subprocess.run(
            airflow_cmd("zygote", "status", "--json"),
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None
    return parse_status(done.stdout.decode("utf-8", errors="replace"))


def parse_status(text: str) -> dict[str, Any] | None:
    """The JSON object in the status output (tolerating log lines printed before it)."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        data = json.loads(text[start:])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


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
        """Start ``airflow zygote serve``; ready once ``status --json`` exits 0 (returns that status)."""
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
        """Skip the (seconds-long) status CLI until an ``ipc://`` socket file exists."""
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
