"""Start ``airflow zygote serve`` as a subprocess and wait until it is healthy.

One launcher for everything that runs a zygote from outside: ``make run`` (``zygote.demo``), the bench
(``zygote.bench.processes``) and the test harness (``tests/zygote_harness.py``). Healthy means the
zygote answers a status request through its own control client (``zygote.client.control``) and says
``healthy``: its forker has imported Airflow and frozen its heap, so the next parse request is served.

The zygote runs in its own session: a Ctrl-C at the terminal reaches only the launching process, which
then stops the zygote with SIGTERM (it drains) and, after a grace period, SIGKILLs its process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zygote.client import control
from zygote.config import Settings

START_TIMEOUT = 120.0
POLL_INTERVAL = 0.2


class ZygoteLaunchError(RuntimeError):
    """The zygote exited while starting, or was not healthy in time (the message ends with its log tail)."""


def airflow_command(*args: str) -> list[str]:
    """``airflow ...`` of this interpreter's environment, never another install on ``PATH``.

    The console script rather than ``python -m airflow``: ``-m`` puts the current directory first on
    ``sys.path``, so a ``zygote/`` folder there would shadow the installed package.
    """
    script = Path(sys.executable).parent / "airflow"
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "airflow", *args]


@dataclass
class ZygoteProcess:
    """One ``airflow zygote serve`` subprocess, its environment and the file its output goes to."""

    popen: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path

    @classmethod
    def start(
        cls,
        env: dict[str, str],
        log_path: Path,
        extra_env: dict[str, str] | None = None,
        *,
        wait: bool = True,
        timeout: float = START_TIMEOUT,
    ) -> ZygoteProcess:
        """Spawn the zygote (own session, output appended to ``log_path``); by default wait until healthy."""
        full_env = {**env, **(extra_env or {})}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                airflow_command("zygote", "serve"),
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = cls(popen, full_env, log_path)
        if wait:
            try:
                process.wait_healthy(timeout)
            except BaseException:
                process.stop(timeout=10.0)  # the caller never gets the process: leave nothing running
                raise
        return process

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def settings(self) -> Settings:
        """What a client of this zygote needs: its socket (``[zygote]`` from the environment given)."""
        return Settings(socket=self.env["AIRFLOW__ZYGOTE__SOCKET"])

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        """The zygote's ``status`` report; raises :class:`control.ControlError` while it does not answer."""
        return control.query_status(self.settings, timeout_s=timeout)

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """Until ``status`` says healthy; returns that report. Raises :class:`ZygoteLaunchError` otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise ZygoteLaunchError(f"airflow zygote serve exited with {self.popen.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(control.ControlError):
                report = self.status(timeout=1.0)
                if report.get("healthy"):
                    return report
            time.sleep(POLL_INTERVAL)
        raise ZygoteLaunchError(f"the zygote was not healthy within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (the zygote drains), then SIGKILL to its whole process group after ``timeout``."""
        if self.running:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        return self.popen.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of the zygote's output, for error messages."""
        return "\n".join(self.log_text().splitlines()[-lines:])
