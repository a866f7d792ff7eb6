"""A child of the test process that has ended and is not reaped: what a stopped forker's worker is."""

from __future__ import annotations

import os
import time

from zygote import linux


def unreaped_child(code: int) -> int:
    """Fork a child that exits with ``code``; return its pid once it is a zombie (the caller reaps it)."""
    pid = os.fork()
    if pid == 0:
        os._exit(code)
    deadline = time.monotonic() + 10
    while linux.zombie_status(pid, os.getpid()) is None:
        assert time.monotonic() < deadline, "the child never became a zombie"
        time.sleep(0.01)
    return pid
