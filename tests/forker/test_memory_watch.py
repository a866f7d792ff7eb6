"""The cheap USS bound: pure arithmetic, and on a real fork it stays above the exact USS."""

from __future__ import annotations

import os
import signal

from zygote import linux
from zygote.forker.memory_watch import NEAR_LIMIT, UssBound, needs_exact
from zygote.forker.worker_table import Worker, WorkerTable

MiB = 2**20
PAGE = linux.PAGE_SIZE
UNSEEN = MiB
"""What the bound cannot see in this test; the forker covers it by reading exactly near the limit."""


def test_the_bound_grows_with_faults_and_rss_growth_from_the_last_exact_read() -> None:
    bound = UssBound()
    bound.observe(faults=10, rss=200 * MiB)  # first sample: the RSS baseline
    assert bound.bound(10, 200 * MiB) == 10 * PAGE
    assert bound.bound(110, 204 * MiB) == 110 * PAGE + 4 * MiB
    bound.rebase(uss=30 * MiB, faults=110, rss=204 * MiB)
    assert bound.bound(110, 204 * MiB) == 30 * MiB
    assert bound.bound(120, 190 * MiB) == 30 * MiB + 10 * PAGE  # RSS that shrank lowers nothing


def test_only_a_bound_near_the_limit_needs_the_exact_figure() -> None:
    assert not needs_exact(10**12, 0)  # no limit
    assert not needs_exact(int(NEAR_LIMIT * 100 * MiB) - 1, 100 * MiB)
    assert needs_exact(int(NEAR_LIMIT * 100 * MiB), 100 * MiB)


def test_the_table_asks_for_an_exact_read_then_kills_on_it() -> None:
    table = WorkerTable()
    table.add(Worker("r1", 101, 0.0, 100.0, 1.0, "/dags/a.py"))
    limit = 100 * MiB
    assert not table.cheap_sample(101, faults=100, rss=300 * MiB, limit=limit)  # shared heap: RSS alone says nothing
    near = 90 * MiB // PAGE
    assert table.cheap_sample(101, faults=near, rss=300 * MiB, limit=limit)
    assert table.sample_memory(101, 20 * MiB, 25 * MiB, limit, (near, 300 * MiB)) == []
    assert not table.cheap_sample(101, faults=near + 10, rss=300 * MiB, limit=limit)  # rebased at 20 MiB
    assert table.sample_memory(101, 120 * MiB, 125 * MiB, limit) == [table_kill(101)]
    assert not table.cheap_sample(101, faults=10**9, rss=300 * MiB, limit=limit)  # already being killed


def table_kill(pid: int) -> object:
    from zygote.forker.worker_table import KillWorker

    return KillWorker(pid, signal.SIGKILL)


def test_on_a_real_fork_the_bound_stays_above_the_exact_uss() -> None:
    inherited = bytearray(os.urandom(32 * MiB))  # shared with the child until it writes
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(go_w)
            for step in range(3):
                for offset in range(0, len(inherited) // 4 * (step + 1), PAGE):  # copy-on-write
                    inherited[offset] = 1
                fresh = bytearray(8 * MiB * (step + 1))  # new pages
                fresh[::PAGE] = b"\x01" * len(fresh[::PAGE])
                os.write(ready_w, b"x")
                os.read(go_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(go_r)
    bound = UssBound()
    try:
        for _ in range(3):
            assert os.read(ready_r, 1) == b"x"
            counters = linux.stat_memory(pid)
            exact = linux.smaps_memory(pid)
            assert counters is not None and exact
            bound.observe(*counters)
            # UNSEEN: pages the parent copied on its own writes after the fork, now the child's alone
            assert bound.bound(*counters) + UNSEEN >= exact["uss"]
            bound.rebase(exact["uss"], *counters)
            os.write(go_w, b"x")
    finally:
        os.close(go_w)  # a child still waiting for "go" sees EOF and ends
        os.waitpid(pid, 0)
        os.close(ready_r)
    assert linux.stat_memory(pid) is None
