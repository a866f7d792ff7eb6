"""Every fork the forker makes goes through :func:`fork_child`: one safety check, one child prologue.

How this works: the worker, the preload probe and the warm-up child are all forks of a process
that must stay single-threaded and whose state (signal wakeup fd, log context, sockets) belongs to
the forker. So before forking, the forker checks it has exactly one native thread and GC enabled
(:func:`fork_refusal`); a failing check raises :class:`ForkRefused` and nothing is forked. In the
child, before the body runs: its own process group, SIGKILL when the forker dies, the forker's
signal handling undone, the forker's log context dropped, every fd closed but ``keep``, and (for
``quiet`` children) stdio on ``/dev/null``. The child always ends in ``os._exit``: it never returns
into the forker's loop, and a body that raises ends with Airflow's last-chance message and code.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable

from zygote import linux

CRASH_EXIT_CODE = 124
"""What ``WatchedSubprocess.start``'s child branch exits with when its target raised."""


class ForkRefused(Exception):
    """A fork-safety check failed: forking now could deadlock or corrupt the child."""


def fork_refusal() -> str:
    """Why forking now is unsafe, or "" when it is safe."""
    threads = linux.native_thread_count()
    if threads != 1:
        return f"the forker has {threads} native threads; forking now could deadlock the child"
    if not gc.isenabled():
        return "garbage collection is disabled in the forker"
    return ""


def fork_child(body: Callable[[], int], keep: Iterable[int], *, quiet: bool) -> int:
    """Fork a child that runs the prologue, then ``body`` (its exit code); returns the child's pid.

    Raises :class:`ForkRefused` when the safety check fails and :class:`OSError` when the kernel
    refuses the fork (``EAGAIN``, ``ENOMEM``).
    """
    refusal = fork_refusal()
    if refusal:
        raise ForkRefused(refusal)
    parent = os.getpid()
    keep = set(keep)
    pid = os.fork()
    if pid:
        return pid
    code = CRASH_EXIT_CODE
    try:
        _prologue(parent, keep, quiet)
        code = body()
    except BaseException:
        _last_words()
    os._exit(code)


def _prologue(parent: int, keep: set[int], quiet: bool) -> None:
    os.setpgid(0, 0)
    linux.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:  # the forker died before PDEATHSIG was armed
        os._exit(CRASH_EXIT_CODE)
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    _forget_log_context()
    linux.close_fds_except({0, 1, 2, *keep})
    if quiet:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)


def _forget_log_context() -> None:
    """The forker's structlog context (``component``) must not reach a log line a child writes."""
    import structlog

    structlog.contextvars.clear_contextvars()


def _last_words() -> None:
    """Same last resort as ``WatchedSubprocess.start``'s child branch."""
    try:
        print(f"Exception in child process, exiting with code {CRASH_EXIT_CODE}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
    except BaseException:
        return
