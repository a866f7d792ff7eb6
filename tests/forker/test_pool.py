"""The warm pool's bookkeeping (pure), and a pool worker's wait for its assignment (a real socketpair)."""

from __future__ import annotations

import socket
from typing import Any

from protocol import Spawn
from zygote.forker.pool import PooledWorker, WarmPool, assign, process_digest
from zygote.forker.worker import ChannelPairs, await_assignment


class NoPairs(ChannelPairs):
    def __init__(self) -> None:
        super().__init__({}, {})


def pooled(pid: int, heap: int = 0, digest: str | None = None) -> PooledWorker:
    return PooledWorker(pid, NoPairs(), heap, digest)


def spawn(request_id: str = "r1", **process: Any) -> Spawn:
    return Spawn(
        id=request_id, path="/dags/a.py", bundle_path="/dags", bundle_name="b", timeout=5.0, cwd="/", process=process
    )


def test_the_pool_wants_workers_up_to_its_size_and_hands_out_the_oldest() -> None:
    pool = WarmPool(2)
    assert pool.wanted()
    pool.add(pooled(11))
    pool.add(pooled(12))
    assert not pool.wanted()
    taken = pool.take("d")
    assert taken is not None and taken.pid == 11
    assert 11 not in pool and len(pool) == 1 and pool.wanted()
    assert pool.handed_out == 1


def test_a_heap_change_evicts_every_idle_worker_and_none_is_handed_out_stale() -> None:
    pool = WarmPool(2)
    pool.add(pooled(11))
    pool.add(pooled(12))
    evicted = pool.heap_changed()
    assert [w.pid for w in evicted] == [11, 12]
    assert pool.take("d") is None
    assert sorted(pool.pids()) == [11, 12]  # killed, not reaped yet: the loop still waits for them
    assert pool.reaped(11) is None  # an evicted worker's end is expected
    pool.add(pooled(13, heap=pool.heap))
    taken = pool.take("d")
    assert taken is not None and taken.pid == 13
    assert pool.pids() == [12]


def test_an_idle_worker_that_dies_is_reported_and_replaced() -> None:
    pool = WarmPool(1)
    pool.add(pooled(11))
    lost = pool.reaped(11)
    assert lost is not None and lost.pid == 11
    assert pool.wanted() and not pool.pids()


def test_a_closed_pool_evicts_and_never_refills() -> None:
    pool = WarmPool(3)
    pool.add(pooled(11))
    assert [w.pid for w in pool.close()] == [11]
    assert not pool.wanted()
    assert pool.take("d") is None
    assert WarmPool(0).wanted() is False


def test_a_pool_worker_gets_its_request_or_eof() -> None:
    forker_end, worker_end = socket.socketpair()
    request = spawn(process={"env": {"A": "1"}, "sys_path": ["/x"]})
    worker = PooledWorker(1, ChannelPairs({}, {"report": forker_end}), 0)
    assert assign(worker, request)
    assert await_assignment(worker_end) == request
    forker_end.close()
    assert await_assignment(worker_end) is None  # evicted, or the forker is gone
    worker_end.close()


def test_garbage_instead_of_a_request_is_no_assignment() -> None:
    forker_end, worker_end = socket.socketpair()
    forker_end.sendall(b"\x00\x00\x00\x03abc")
    assert await_assignment(worker_end) is None
    forker_end.close()
    worker_end.close()


def test_the_first_spawn_takes_an_unspecialised_worker_then_the_pool_serves_one_session_at_a_time() -> None:
    pool = WarmPool(3)
    pool.add(pooled(10))  # forked before any spawn: serves any session
    pool.add(pooled(11))
    taken = pool.take("a")
    assert taken is not None and taken.pid == 10
    assert [w.pid for w in pool.specialise("a")] == [11]  # the rest make way for workers of session "a"
    assert pool.digest == "a" and pool.specialisations == 1 and pool.evicted == 1
    pool.add(pooled(12, digest="a"))
    pool.add(pooled(13, digest="a"))
    assert pool.specialised() == 2
    assert pool.take("b") is None  # another session's spawn never gets a worker set up for "a"
    assert [w.pid for w in pool.specialise("b")] == [12, 13]
    assert pool.specialise("b") == [] and pool.specialisations == 2  # the same session again: nothing
    pool.add(pooled(14, digest="b"))
    taken = pool.take("b")
    assert taken is not None and taken.pid == 14
    assert sorted(pool.pids()) == [11, 12, 13]  # evicted, not reaped yet


def test_the_digest_is_stable_and_tells_sessions_apart() -> None:
    one = {"env": {"A": "1", "B": "2"}, "sys_path": ["/x", "/y"]}
    same = {"sys_path": ["/x", "/y"], "env": {"B": "2", "A": "1"}}
    assert process_digest(one) == process_digest(same)
    assert process_digest(one) != process_digest({**one, "sys_path": ["/y", "/x"]})
    assert process_digest(one) != process_digest({**one, "env": {"A": "1", "B": "3"}})


def test_a_specialised_worker_is_handed_the_request_alone() -> None:
    forker_end, worker_end = socket.socketpair()
    request = spawn(process={"env": {"A": "1"}, "sys_path": ["/x"]})
    worker = PooledWorker(1, ChannelPairs({}, {"report": forker_end}), 0, process_digest(request.process))
    assert assign(worker, request)
    received = await_assignment(worker_end)
    assert received is not None and received.process == {} and received.path == request.path
    forker_end.close()
    worker_end.close()
