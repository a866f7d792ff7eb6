"""Starting and reliably stopping the bench's subprocesses (side runs and the zygote).

Each subprocess gets its own session, so a Ctrl-C at the terminal reaches only the bench, which then
stops them in order. Stopping snapshots the whole tree first: once a parent dies its children are
re-parented and could no longer be found, and a leaked parse worker would skew the next round.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil
import structlog

log = structlog.get_logger(__name__)


@dataclass
class Started:
    """A subprocess the bench owns, with the log file its output goes to."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 25) -> str:
        """Last lines of the subprocess's output, for error messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def spawn(name: str, cmd: list[str], env: dict[str, str], log_path: Path) -> Started:
    """Start ``cmd`` in a new session with stdout and stderr going to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        popen = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    log.debug("bench.spawned", name=name, pid=popen.pid)
    return Started(name=name, popen=popen, log_path=log_path)


def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of ``pid`` (empty if it is gone)."""
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def stop(started: Started, grace: float = 10.0) -> None:
    """SIGTERM the root, wait up to ``grace`` seconds, then SIGKILL whatever of its tree remains."""
    family = descendants(started.pid)
    if started.popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            started.popen.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            started.popen.wait(timeout=grace)
    family.extend(descendants(started.pid))
    _kill_all(family)
    _kill_group(started)
    with contextlib.suppress(subprocess.TimeoutExpired):
        started.popen.wait(timeout=5.0)


def _kill_all(procs: list[psutil.Process]) -> None:
    """SIGKILL each process still alive; psutil checks the create time, so a reused pid is safe."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=5.0)


def _kill_group(started: Started) -> None:
    """Kill the session's process group (pgid == root pid), which catches orphans we never saw."""
    if started.popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            started.popen.kill()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(started.pid, signal.SIGKILL)


class Registry:
    """Every subprocess the bench started, so one ``finally`` can stop them all, even on Ctrl-C."""

    def __init__(self) -> None:
        self._live: dict[int, Started] = {}

    def spawn(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path) -> Started:
        started = spawn(name, cmd, env, log_path)
        self._live[started.pid] = started
        return started

    def stop(self, started: Started, grace: float = 10.0) -> None:
        self._live.pop(started.pid, None)
        stop(started, grace)

    def stop_all(self) -> None:
        """Stop newest first: side runs before the zygote they talk to."""
        for started in reversed(list(self._live.values())):
            self.stop(started, grace=5.0)
