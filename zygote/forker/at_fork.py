"""The probe's test fork: what forking a process that holds the round's modules leaves in the parent.

Why: a module can start nothing at import and still start a thread in the forker at its next fork
(``os.register_at_fork(after_in_parent=...)``, or a C library's ``pthread_atfork`` handler).
The probe's import checks cannot see that, and the forker's own fork-safety check sees it only
after the module was promoted, when the generation must retire. So after its imports the probe
forks once, as the forker will (the grandchild exits at once and is reaped within a bound), and
compares its threads, fds, children and GC settings before and after.

How blame is found: before the imports, :class:`AtForkHooks` wraps ``os.register_at_fork`` so
every Python hook is tied to the candidate being imported when it was registered, and measures
what each ``before`` and ``after_in_parent`` hook changes when it runs. What a measured hook
changed is that module's fault; whatever the fork changed beyond that (a C-level handler, which
no wrapper sees) is returned unattributed, and the forker finds its module by probing apart.
"""

from __future__ import annotations

import gc
import os
import select
from collections.abc import Callable
from dataclasses import dataclass, field

from zygote import linux
from zygote.forker.verdicts import Fault

Hook = Callable[[], object]
Finding = tuple[Fault, str]
"""A fault and the sentence that explains it."""


@dataclass(frozen=True)
class Snapshot:
    """What the forker's fork-safety check (and the probe's import check) looks at."""

    threads: int
    fds: frozenset[int]
    children: frozenset[int]
    gc: tuple[bool, tuple[int, ...]]

    @classmethod
    def take(cls) -> Snapshot:
        children = frozenset(linux.child_pids(os.getpid()))
        return cls(linux.native_thread_count(), frozenset(linux.open_fds()), children, _gc_settings())


@dataclass
class Changes:
    """What appeared between two snapshots (threads are counted: they have no stable id here)."""

    threads: int = 0
    fds: set[int] = field(default_factory=set)
    children: set[int] = field(default_factory=set)
    gc: bool = False

    @classmethod
    def between(cls, before: Snapshot, after: Snapshot) -> Changes:
        return cls(
            max(0, after.threads - before.threads),
            set(after.fds - before.fds),
            set(after.children - before.children),
            after.gc != before.gc,
        )

    def add(self, other: Changes) -> None:
        self.threads += other.threads
        self.fds |= other.fds
        self.children |= other.children
        self.gc = self.gc or other.gc

    def beyond(self, explained: Changes) -> Changes:
        """What these changes hold that ``explained`` does not account for."""
        threads = max(0, self.threads - explained.threads)
        return Changes(
            threads, self.fds - explained.fds, self.children - explained.children, self.gc and not explained.gc
        )

    def finding(self) -> Finding | None:
        if self.threads:
            return Fault.THREAD_AFTER_FORK, f"a fork left {self.threads} thread(s) running in the parent"
        if self.fds:
            return Fault.FD, f"a fork left {len(self.fds)} file descriptor(s) open in the parent"
        if self.children:
            return Fault.CHILD, f"a fork left {len(self.children)} child process(es) in the parent"
        if self.gc:
            return Fault.GC, "a fork changed the garbage collector's settings in the parent"
        return None


class AtForkHooks:
    """Ties every at-fork hook to the candidate being imported, and measures the parent's hooks."""

    def __init__(self) -> None:
        self.importing = ""
        """The candidate being imported now: hooks registered meanwhile are its hooks."""
        self.blamed: dict[str, Finding] = {}
        self.explained = Changes()
        self._register = os.register_at_fork

    def install(self) -> None:
        os.register_at_fork = self._register_at_fork

    def _register_at_fork(
        self, *, before: Hook | None = None, after_in_child: Hook | None = None, after_in_parent: Hook | None = None
    ) -> None:
        hooks: dict[str, Hook] = {}
        if before is not None:
            hooks["before"] = self._measured(self.importing, before)
        if after_in_parent is not None:
            hooks["after_in_parent"] = self._measured(self.importing, after_in_parent)
        if after_in_child is not None:
            hooks["after_in_child"] = after_in_child  # runs in the grandchild, which exits at once
        self._register(**hooks)

    def _measured(self, module: str, hook: Hook) -> Hook:
        def measured() -> None:
            before = Snapshot.take()
            try:
                hook()
            finally:
                self._note(module, Changes.between(before, Snapshot.take()))

        return measured

    def _note(self, module: str, changes: Changes) -> None:
        finding = changes.finding()
        if finding is None or not module:
            return
        self.blamed.setdefault(module, finding)
        self.explained.add(changes)


def fork_once(hooks: AtForkHooks, exit_within_s: float) -> Finding | None:
    """Fork once; the grandchild exits at once. What the fork left that no measured hook explains."""
    before = Snapshot.take()
    try:
        pid = os.fork()
    except OSError as exc:  # EAGAIN, ENOMEM: the modules are not known to be at fault
        return Fault.CRASHED, f"the test fork failed: {exc}"
    if pid == 0:
        os._exit(0)
    if not _reaped_within(pid, exit_within_s):
        return Fault.CHILD, f"a fork's child did not exit within {exit_within_s:.0f} s (an at-fork hook blocks it)"
    return Changes.between(before, Snapshot.take()).beyond(hooks.explained).finding()


def _reaped_within(pid: int, limit_s: float) -> bool:
    """Wait for ``pid`` to exit, at most ``limit_s``; one that does not is killed. True if it exited."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # a kernel before 5.3: wait without a bound (the probe's own deadline still holds)
        os.waitpid(pid, 0)
        return True
    try:
        exited = bool(select.select([pidfd], [], [], limit_s)[0])
    finally:
        os.close(pidfd)
    if not exited:
        linux.kill_quietly(pid)
    os.waitpid(pid, 0)
    return exited


def _gc_settings() -> tuple[bool, tuple[int, ...]]:
    return gc.isenabled(), gc.get_threshold()
