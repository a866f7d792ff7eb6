"""``linux.zombie_status``: how a stopped forker's finished worker ended, read by another process."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from unreaped import unreaped_child

from zygote import linux

_READER = "import sys; from zygote import linux; print(linux.zombie_status(int(sys.argv[1]), int(sys.argv[2])))"


def test_a_process_that_is_not_the_parent_reads_the_exit_status_of_its_zombie() -> None:
    pid = unreaped_child(3)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _READER, str(pid), str(os.getpid())], capture_output=True, text=True, check=True
        )
        status = int(done.stdout)
        assert linux.exit_code_from_status(status) == 3
        assert linux.zombie_status(pid, os.getpid() + 1) is None, "another parent's child is not ours"
    finally:
        _, status = os.waitpid(pid, 0)
    assert linux.exit_code_from_status(status) == 3
    assert linux.zombie_status(pid, os.getpid()) is None, "reaped: gone"


def test_a_killed_zombie_reads_as_minus_its_signal_and_a_live_process_as_none() -> None:
    assert linux.zombie_status(os.getpid(), os.getppid()) is None
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), 9)
    try:
        deadline = time.monotonic() + 10
        while (status := linux.zombie_status(pid, os.getpid())) is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert linux.exit_code_from_status(status) == -9
    finally:
        os.waitpid(pid, 0)
