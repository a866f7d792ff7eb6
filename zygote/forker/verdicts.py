"""What a preload candidate was rejected for, as a kind rather than a sentence.

The probe child (and the forker, for what only shows there) names the kind of every rejection;
the reason text is for people. Which rejections describe the library itself, and so are kept in
the state file across generations, is decided from the kind alone (:data:`LIBRARY_FAULTS`).
"""

from __future__ import annotations

import enum


class Fault(enum.Enum):
    """Why a module is not held in the forker; the value travels in ``probe_report.kind``."""

    THREAD = "thread"
    """Its import left a native thread running."""
    FD = "fd"
    """Its import (or a fork after it) left a file descriptor open."""
    CHILD = "child"
    """Its import (or a fork after it) left a child process."""
    GC = "gc"
    """Its import (or a fork after it) changed the garbage collector's settings."""
    THREAD_AFTER_FORK = "thread_after_fork"
    """A fork of a process holding it left a thread in the parent (an at-fork hook, Python's or C's)."""
    FORKER_THREAD = "forker_thread"
    """It passed its probe but left a thread when imported in the forker itself."""
    IMPORT_FAILED = "import_failed"
    """Its import raised (in the probe or in the forker)."""
    TIMEOUT = "timeout"
    """Its import took longer than ``probe_timeout``."""
    MEMORY = "memory"
    """Its import added more than ``probe_memory_limit``."""
    CRASHED = "crashed"
    """The probe child died or gave no verdict while on this module."""
    NOT_APPROVED = "not_approved"
    """Listed in ``preload_modules`` but not approved."""


TEST_FORK = ""
"""The ``module`` of the probe's last report: the verdict of its test fork on what it verified."""

LIBRARY_FAULTS = frozenset(
    {Fault.THREAD, Fault.FD, Fault.CHILD, Fault.GC, Fault.THREAD_AFTER_FORK, Fault.FORKER_THREAD}
)
"""Properties of the library, not of this host's limits: remembered in the state file, never probed again."""


def fault_of(kind: str) -> Fault | None:
    """The fault a report's ``kind`` names; None for "" (no fault) and for a kind this code does not know."""
    try:
        return Fault(kind) if kind else None
    except ValueError:
        return None
