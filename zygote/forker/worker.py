"""What runs inside a forked worker: Airflow's own child set-up and parse entrypoint.

The forker makes the same four socketpairs ``WatchedSubprocess.start`` makes (requests, stdout,
stderr, logs), plus ``crash`` (where Airflow's last-chance handler writes; the client copies it to
the dag-processor's stderr, as stock does) and ``report`` (our measurements, read by the forker).
The child isolates itself, then calls ``supervisor._fork_main`` with
``processor._parse_file_entrypoint``: from there on it is stock Airflow code, ending in ``os._exit``.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from protocol import CHANNELS, WorkerReport, frame
from zygote import linux
from zygote.forker.measure import GcTimer, ImportTimer


@dataclass(frozen=True)
class WorkerLimits:
    cpu_seconds: int = 0
    open_files: int = 0


@dataclass
class ChannelPairs:
    """Socketpairs for one worker: ``child`` ends stay in the worker, ``parent`` ends leave it."""

    child: dict[str, socket.socket]
    parent: dict[str, socket.socket]

    @classmethod
    def create(cls) -> ChannelPairs:
        child: dict[str, socket.socket] = {}
        parent: dict[str, socket.socket] = {}
        for name in (*CHANNELS, "report"):
            child[name], parent[name] = socket.socketpair()
        return cls(child, parent)

    def relayed_parent_fds(self) -> list[int]:
        """Parent ends handed to the gateway, in :data:`CHANNELS` order."""
        return [self.parent[name].fileno() for name in CHANNELS]

    def close_child_ends(self) -> None:
        for sock in self.child.values():
            sock.close()

    def close_relayed_parent_ends(self) -> None:
        for name in CHANNELS:
            self.parent[name].close()


def run_worker(
    pairs: ChannelPairs,
    cwd: str,
    limits: WorkerLimits,
    baseline_modules: frozenset[str],
    forker_pid: int,
    target: Callable[[], None] | None = None,
) -> NoReturn:
    """Become a worker (in the forked child). Never returns."""
    try:
        _isolate(forker_pid)
        child = pairs.child
        linux.close_fds_except({0, 1, 2, *(sock.fileno() for sock in child.values())})
        # SIGXCPU at the soft limit (Airflow names that signal); SIGKILL a second later if handled.
        linux.set_rlimit(_rlimit("RLIMIT_CPU"), limits.cpu_seconds, limits.cpu_seconds + 1)
        linux.set_rlimit(_rlimit("RLIMIT_NOFILE"), limits.open_files)
        _enter_cwd(cwd)
        os.dup2(child["crash"].fileno(), 2)
        run = _reporting(target or _parse_entrypoint(), child["report"], baseline_modules)
        from airflow.sdk.execution_time.supervisor import _fork_main

        _fork_main(child["requests"], child["stdout"], child["stderr"], child["logs"].fileno(), run)
    except BaseException:
        # Same last resort and exit code as WatchedSubprocess.start's child branch.
        try:
            print("Exception in child process, exiting with code 124", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
        except BaseException:
            pass
    os._exit(124)


def _rlimit(name: str) -> int:
    import resource

    value: int = getattr(resource, name)
    return value


def _parse_entrypoint() -> Callable[[], None]:
    from airflow.dag_processing.processor import _parse_file_entrypoint

    return _parse_file_entrypoint


def _isolate(forker_pid: int) -> None:
    """Own process group, die with the forker, drop the forker's signal handling."""
    os.setpgid(0, 0)
    linux.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != forker_pid:
        os._exit(124)
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def _enter_cwd(cwd: str) -> None:
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)


def _reporting(target: Callable[[], None], report: socket.socket, baseline: frozenset[str]) -> Callable[[], None]:
    """Wrap ``target`` so the worker sends its measurements however the target ends."""
    imports = ImportTimer()
    gc_timer = GcTimer()
    imports.install()
    gc_timer.install()
    start = time.monotonic()

    def run() -> None:
        try:
            target()
        finally:
            _send_report(report, imports, gc_timer, baseline, start)

    return run


def _send_report(
    report: socket.socket, imports: ImportTimer, gc_timer: GcTimer, baseline: frozenset[str], start: float
) -> None:
    try:
        modules = {name: imports.seconds.get(name, 0.0) for name in list(sys.modules) if name not in baseline}
        memory = {**linux.smaps_memory(), "start_monotonic": start}
        report.sendall(frame(WorkerReport(modules=modules, gc=gc_timer.as_dict(), memory=memory)))
    except Exception:
        return
