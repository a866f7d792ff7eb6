"""A fork that fails in the forker (its fd limit reached) costs that one parse, not the forker.

The test lowers the running forker's ``RLIMIT_NOFILE`` soft limit (``prlimit``, as a container's
ulimit or a leak in DAG code would) so the socketpairs of the next worker cannot be made, holds it for
a window, then restores it. Parses in the window must still happen (fallback local, or a clear error
and a retry), and afterwards the *same* forker process serves again: its pid is the parent of the
next workers.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any

import pytest
from processes import forker_pid, requests, wait_quiet
from zygote_harness import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(420)]

FILES = 4
HEADROOM = 3  # a few fds for the forker's own small reads; a worker needs a dozen


def _quiet_fds(pid: int) -> set[int]:
    """The forker's fds between workers (its own sockets), not the dozen a worker briefly holds."""
    samples = []
    for _ in range(20):
        samples.append({int(name) for name in os.listdir(f"/proc/{pid}/fd")})
        time.sleep(0.05)
    return min(samples, key=len)


def _limit_leaving(open_fds: set[int], spare: int) -> int:
    """The lowest RLIMIT_NOFILE under which only ``spare`` new fds can still be opened (fds already
    open above it stay usable; a new fd takes the lowest free number)."""
    limit, free = 0, 0
    while free < spare:
        free += limit not in open_fds
        limit += 1
    return limit


def test_fork_failure_answers_one_request_and_the_forker_keeps_serving(
    make_home: Any, zygote_factory: Any, start_processor: Any
) -> None:
    # Without the warm pool every request forks: with it a request takes a worker forked before the
    # limit, and a refill reuses the fd numbers the last hand-over freed, so no request's fork fails.
    home = make_home("side", AIRFLOW__ZYGOTE__WARM_WORKERS="0")
    files = set(home.write_marker_dags(FILES))
    zygote = zygote_factory(home.env)
    processor = start_processor(home)
    wait_for(lambda: processor.remote_parses() >= FILES, 180, "parses through the zygote", interval=0.2)
    pid = forker_pid(zygote)
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (_limit_leaving(_quiet_fds(pid), HEADROOM), hard))
    start = time.time()
    try:
        wait_quiet(15)
    finally:
        if Path(f"/proc/{pid}").exists():
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    end = time.time()
    in_window = home.parses_between(start, end)
    assert {parse.file for parse in in_window} == files, in_window  # every file still parsed
    assert processor.alive()
    counts = requests(zygote)
    assert counts.get("fork_failed", 0) >= 1, counts  # the refused forks are counted, by their own code
    assert "forker_lost" not in counts, counts  # no in-flight parse lost with a dying forker
    assert forker_pid(zygote) == pid, "the forker died on a failed fork and was replaced"
    since = time.time()
    wait_for(
        lambda: any(p.ppid == pid for p in home.parses_between(since, time.time() + 1)),
        90,
        "a worker of the same forker after the limit was lifted",
        interval=0.2,
    )
    assert not home.import_errors(), home.import_errors()
