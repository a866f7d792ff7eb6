"""What runs inside a forked worker: the session's process state, then Airflow's child set-up and parse.

The forker makes the same four socketpairs ``WatchedSubprocess.start`` makes (requests, stdout,
stderr, logs), plus ``crash`` (where Airflow's last-chance handler writes; the client copies it to
the dag-processor's stderr, as stock does) and ``report`` (our measurements, read by the forker).
After :func:`~zygote.forker.children.fork_child`'s prologue, the worker takes on what a stock child
of the dag-processor would have inherited (``spawn.process``: its environment and ``sys.path``;
SPEC.md 4a), applies its limits, and calls ``supervisor._fork_main`` with
``processor._parse_file_entrypoint``: from there on it is stock Airflow code, ending in ``os._exit``.

Three bodies, one sequence: :func:`worker_body` is forked for a request; a warm-pool worker
(ADR 0006) is forked ahead of one, either :func:`specialised_body` (the session's process adopted
and ``_fork_main`` run before the request, whose target waits for it) or :func:`unspecialised_body`
(forked before any session was seen: it waits first, then does what :func:`worker_body` does).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from protocol import CHANNELS, FrameBuffer, ProtocolError, Spawn, WorkerReport, frame
from zygote import linux
from zygote.forker.measure import GcTimer, ImportTimer, ModuleBaseline


@dataclass(frozen=True)
class WorkerLimits:
    cpu_seconds: int = 0
    open_files: int = 0


REPORT_ERROR_CHARS = 500
"""How much of a failed measurement's error the exit report carries."""


@dataclass(frozen=True)
class Assignment:
    """What a worker runs once its request is known: Airflow's entrypoint, and the request's bundle."""

    target: Callable[[], None]
    bundle_path: str


@dataclass(frozen=True)
class Measured:
    """What a worker measures while it parses, for its exit report."""

    imports: ImportTimer
    gc_timer: GcTimer
    baseline: ModuleBaseline
    bundle_path: str
    start: float

    def modules(self) -> dict[str, float]:
        """Modules the parse imported (name -> seconds), but not the bundle's own.

        A module loaded from the DAG bundle (a shared helper next to the DAG files) is user code that
        changes with every sync; preloading it would hand workers a stale copy, so it is never a
        preload candidate nor preload advice.
        """
        bundle = self.bundle_path.rstrip("/") + "/" if self.bundle_path else ""
        seconds = self.imports.seconds
        return {
            name: seconds.get(name, 0.0)
            for name, module in self.baseline.imported_since()
            if not (bundle and _module_file(module).startswith(bundle))
        }


def _module_file(module: object) -> str:
    """A module's ``__file__`` without attribute hooks (a lazy module would load on ``getattr``)."""
    try:
        namespace = object.__getattribute__(module, "__dict__")
    except AttributeError:
        return ""
    file = namespace.get("__file__") if isinstance(namespace, dict) else None
    return file if isinstance(file, str) else ""


@dataclass
class ChannelPairs:
    """Socketpairs for one worker: ``child`` ends stay in the worker, ``parent`` ends leave it."""

    child: dict[str, socket.socket]
    parent: dict[str, socket.socket]

    @classmethod
    def create(cls) -> ChannelPairs:
        """All pairs or none: a failure (``EMFILE``) closes the pairs already made, then raises."""
        pairs = cls({}, {})
        try:
            for name in (*CHANNELS, "report"):
                pairs.child[name], pairs.parent[name] = socket.socketpair()
        except OSError:
            pairs.close_all()
            raise
        return pairs

    def child_fds(self) -> set[int]:
        return {sock.fileno() for sock in self.child.values()}

    def relayed_parent_fds(self) -> list[int]:
        """Parent ends handed to the gateway, in :data:`CHANNELS` order."""
        return [self.parent[name].fileno() for name in CHANNELS]

    def close_child_ends(self) -> None:
        for sock in self.child.values():
            sock.close()

    def close_relayed_parent_ends(self) -> None:
        for name in CHANNELS:
            self.parent[name].close()

    def close_all(self) -> None:
        for sock in (*self.child.values(), *self.parent.values()):
            sock.close()


def worker_body(
    pairs: ChannelPairs,
    spawn: Spawn,
    limits: WorkerLimits,
    baseline_modules: ModuleBaseline,
    target: Callable[[], None] | None = None,
) -> Callable[[], int]:
    """The body :func:`~zygote.forker.children.fork_child` runs in a worker forked for ``spawn``."""

    def body() -> int:
        adopt_process(spawn.process)
        apply_request(spawn, limits)
        entrypoint = target or _parse_entrypoint(spawn.path, pairs.child["logs"])
        return supervised(pairs, lambda: Assignment(entrypoint, spawn.bundle_path), baseline_modules)

    return body


def specialised_body(
    pairs: ChannelPairs,
    session: Spawn,
    limits: WorkerLimits,
    baseline_modules: ModuleBaseline,
) -> Callable[[], int]:
    """A pool worker pre-specialised for the session of ``session``, its latest spawn (ADR 0006).

    It becomes that session's child (``process``, and the spawn's cwd, which a session keeps) and
    runs Airflow's child set-up before any request exists; ``_fork_main``'s target then waits for
    the assignment and applies what the request decides (limits, cwd, path, the pre-import step).
    At EOF (evicted, forker gone) it exits at once.
    """

    def body() -> int:
        adopt_process(session.process)
        _enter_cwd(session.cwd)
        logs = pairs.child["logs"]

        def assigned() -> Assignment:
            spawn = await_assignment(pairs.child["report"])
            if spawn is None:  # nothing was assigned: nothing to report, no atexit handler to run
                os._exit(0)
            apply_request(spawn, limits)
            return Assignment(_parse_entrypoint(spawn.path, logs), spawn.bundle_path)

        return supervised(pairs, assigned, baseline_modules)

    return body


def unspecialised_body(
    pairs: ChannelPairs, limits: WorkerLimits, baseline_modules: ModuleBaseline
) -> Callable[[], int]:
    """A pool worker forked before the forker knew any session: it waits, then is a fresh worker."""

    def body() -> int:
        spawn = await_assignment(pairs.child["report"])
        if spawn is None:  # evicted or the forker is gone: nothing ran, nothing to report
            return 0
        return worker_body(pairs, spawn, limits, baseline_modules)()

    return body


def await_assignment(report: socket.socket) -> Spawn | None:
    """Block until the forker writes one ``spawn`` on the report socket; None at EOF or garbage."""
    buffer = FrameBuffer()
    while True:
        try:
            data = report.recv(1 << 16)
        except InterruptedError:
            continue
        except OSError:
            return None
        if not data:
            return None
        try:
            messages = buffer.feed(data)
        except ProtocolError:
            return None
        if messages:
            first = messages[0]
            return first if isinstance(first, Spawn) else None


def supervised(pairs: ChannelPairs, assigned: Callable[[], Assignment], baseline_modules: ModuleBaseline) -> int:
    """Airflow's child set-up (``_fork_main``), then the target ``assigned`` returns, measured.

    The crash channel goes on fd 2 first: ``_fork_main`` keeps a copy of fd 2 as its last-chance
    stderr, which the client copies to the dag-processor's stderr as stock's parent does.
    """
    child = pairs.child
    os.dup2(child["crash"].fileno(), 2)
    # Our own handles on the channels: Airflow closes and dups its fds, a shutdown reaches them all.
    channels = [child[name].dup() for name in CHANNELS]
    run = _reporting(assigned, child["report"], channels, baseline_modules)
    from airflow.sdk.execution_time.supervisor import _fork_main

    _fork_main(child["requests"], child["stdout"], child["stderr"], child["logs"].fileno(), run)
    return 0  # not reached: _fork_main ends the process


def apply_request(spawn: Spawn, limits: WorkerLimits) -> None:
    """What a request decides in the worker before Airflow's entrypoint: its limits and cwd."""
    # SIGXCPU at the soft limit (Airflow names that signal); SIGKILL a second later if handled.
    linux.set_rlimit(_rlimit("RLIMIT_CPU"), limits.cpu_seconds, limits.cpu_seconds + 1)
    linux.set_rlimit(_rlimit("RLIMIT_NOFILE"), limits.open_files)
    _enter_cwd(spawn.cwd)


def adopt_process(process: Mapping[str, Any]) -> None:
    """Become the dag-processor's child: its environment and ``sys.path`` (SPEC.md 4a).

    An empty ``process`` (a gateway that forwards none) keeps the forker's own, as before.
    """
    env = process.get("env")
    if isinstance(env, dict) and env:
        os.environ.clear()
        os.environ.update({str(name): str(value) for name, value in env.items()})
    sys_path = process.get("sys_path")
    if isinstance(sys_path, list) and sys_path:
        sys.path[:] = [str(entry) for entry in sys_path]


def _rlimit(name: str) -> int:
    import resource

    value: int = getattr(resource, name)
    return value


def _parse_entrypoint(path: str, logs: socket.socket) -> Callable[[], None]:
    """Airflow's entrypoint, preceded by what stock's parent does for this file before it forks."""
    from airflow.dag_processing.processor import _parse_file_entrypoint

    def entrypoint() -> None:
        _pre_import(path, logs)
        _parse_file_entrypoint()

    return entrypoint


def _pre_import(path: str, logs: socket.socket) -> None:
    """Stock runs ``_pre_import_airflow_modules`` in the manager before each fork; we run it here.

    Its warnings are written on the log channel by a logger built as the manager builds its
    per-file logger (``logging_processors(json_output=True)``, ``logger_name="processor"``), so the
    per-file log gets stock's line with stock's fields. Modules the forker holds import at no cost.
    """
    import structlog
    from airflow.dag_processing.processor import _pre_import_airflow_modules
    from airflow.sdk.log import logging_processors

    stream = logs.makefile("wb")
    logger = structlog.wrap_logger(
        structlog.BytesLogger(stream), processors=logging_processors(json_output=True), logger_name="processor"
    )
    _pre_import_airflow_modules(path, logger.bind())
    stream.flush()


def _enter_cwd(cwd: str) -> None:
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)


def _reporting(
    assigned: Callable[[], Assignment],
    report: socket.socket,
    channels: list[socket.socket],
    baseline: ModuleBaseline,
) -> Callable[[], None]:
    """Wrap the target ``assigned`` returns so the worker reports as it exits, however it exits.

    Every way out of ``_fork_main`` (a parse, ``SystemExit``, its last-chance handler, a DAG file's
    own ``os._exit``) ends in ``os._exit``; from the assignment on, that call first reports.
    """
    imports = ImportTimer()
    gc_timer = GcTimer()
    imports.install()
    gc_timer.install()

    def run() -> None:
        assignment = assigned()
        start = time.monotonic()  # set-up done, request applied: Airflow's parse entrypoint runs now
        measured = Measured(imports, gc_timer, baseline, assignment.bundle_path, start)
        announce = functools.partial(_send_report, report, channels, measured)
        os._exit = _exit_reporting(os._exit, announce)  # Airflow's exit calls os._exit by name
        assignment.target()

    return run


class _Exit(Protocol):
    def __call__(self, status: int) -> NoReturn: ...


def _exit_reporting(exit_now: _Exit, announce: Callable[[int], None]) -> _Exit:
    """``os._exit`` that announces the worker's exit first, once.

    Only the worker announces: a process a DAG file forks inherits this ``os._exit`` (and the
    channels), and its exit is not the worker's.
    """
    worker = os.getpid()
    announced = False

    def _exit(status: int) -> NoReturn:
        nonlocal announced
        if not announced and os.getpid() == worker:
            announced = True
            announce(status)
        exit_now(status)

    return _exit


def _send_report(report: socket.socket, channels: list[socket.socket], measured: Measured, code: int) -> None:
    """Shut the channels' write side (the gateway sees EOF now, not at teardown), then report.

    Airflow's ``exit`` has flushed and closed its ends by now; what a thread writes after this is
    lost, as it would be a moment later when the process dies. The forker answers the request from
    this report, so the kernel's teardown of the worker is off the request's path (SPEC.md 7). A
    measurement that fails still sends the exit code, with ``report_error`` saying why.
    """
    for sock in channels:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
    try:
        message = WorkerReport(
            modules=measured.modules(),
            gc=measured.gc_timer.as_dict(),
            memory={**linux.smaps_memory(), "start_monotonic": measured.start},
            ending={"exit_code": code, **linux.own_usage()},
        )
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:REPORT_ERROR_CHARS]
        message = WorkerReport(modules={}, gc={}, memory={}, ending={"exit_code": code, "report_error": error})
    with contextlib.suppress(Exception):
        report.sendall(frame(message))
