"""ForkerPool: the generation lifecycle, with forker processes replaced by socketpairs (no processes)."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator

import pytest

from protocol import Ack, Message, Ready
from zygote.gateway import generations
from zygote.gateway.forker_link import ForkerLink, ForkerState
from zygote.gateway.generations import ForkerPool

_PIDS = itertools.count(4_000_000)  # above any real pid: kill_quietly finds nothing to kill


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ForkerPool, list[tuple[bytes, Message]]]]:
    peers: list[socket.socket] = []

    def spawn(generation: int, verbose: bool) -> ForkerLink:
        ours, theirs = socket.socketpair()
        peers.append(theirs)
        ours.setblocking(False)
        return ForkerLink(generation, next(_PIDS), ours)

    monkeypatch.setattr(generations.ForkerLink, "spawn", staticmethod(spawn))
    sent: list[tuple[bytes, Message]] = []
    yield ForkerPool(False, lambda client, message: sent.append((client, message))), sent
    for peer in peers:
        peer.close()


def _ready(forker: ForkerLink) -> Ready:
    return Ready(generation=forker.generation, pid=forker.pid, airflow="3", python="3.11", frozen=1)


def _only(pool: ForkerPool) -> ForkerLink:
    (forker,) = pool.forkers.values()
    return forker


def _first_serving(forkers: ForkerPool) -> ForkerLink:
    """Start the pool and make its first generation ready: the state every reload test begins from."""
    forkers.start()
    first = _only(forkers)
    forkers.ready(first, _ready(first), 10.0)
    return first


def test_a_reload_during_a_pending_crash_restart_starts_one_generation(
    pool: tuple[ForkerPool, list[tuple[bytes, Message]]],
) -> None:
    forkers, _ = pool
    first = _first_serving(forkers)
    assert forkers.serving() is first
    forkers.lost(first)
    assert forkers.serving() is None and forkers.restart_at is not None
    forkers.reload(None)
    assert forkers.restart_at is None
    forkers.on_timer(now=float("inf"))
    assert forkers.generation == 2 and len(forkers) == 1


def test_a_new_generation_serves_once_ready_and_the_old_one_drains(
    pool: tuple[ForkerPool, list[tuple[bytes, Message]]],
) -> None:
    forkers, sent = pool
    first = _first_serving(forkers)
    forkers.reload((b"ctl", "r-1"))
    forkers.reload((b"ctl", "r-2"))
    assert forkers.generation == 2, "one generation starting at a time"
    second = next(f for f in forkers.forkers.values() if f is not first)
    assert forkers.serving() is first
    forkers.ready(second, _ready(second), 10.0)
    assert forkers.serving() is second and first.state is ForkerState.DRAINING
    assert [message for _, message in sent] == [
        Ack(id="r-1", detail="generation 2 is serving"),
        Ack(id="r-2", detail="generation 2 is serving"),
    ]


def test_crash_restarts_back_off_and_a_ready_resets_it(pool: tuple[ForkerPool, list[tuple[bytes, Message]]]) -> None:
    forkers, _ = pool
    forkers.start()
    delays = []
    for _ in range(3):
        forker = _only(forkers)
        forkers.lost(forker)
        delays.append(forkers.restart_backoff)
        forkers.on_timer(now=float("inf"))
    assert delays == [2.0, 4.0, 8.0]
    forker = _only(forkers)
    forkers.ready(forker, _ready(forker), 10.0)
    assert forkers.restart_backoff == 1.0


def test_retiring_the_serving_generation_starts_the_next_at_once(
    pool: tuple[ForkerPool, list[tuple[bytes, Message]]],
) -> None:
    forkers, _ = pool
    first = _first_serving(forkers)
    forkers.retire(first, "a thread appeared")
    assert forkers.serving() is None and first.state is ForkerState.DRAINING and forkers.generation == 2


def test_reload_requests_beyond_the_bound_are_answered_overloaded(
    pool: tuple[ForkerPool, list[tuple[bytes, Message]]],
) -> None:
    forkers, sent = pool
    forkers.start()
    for i in range(generations.MAX_PENDING_RELOADS + 1):
        forkers.reload((b"ctl", f"r-{i}"))
    assert len(forkers.pending_reloads) == generations.MAX_PENDING_RELOADS
    assert [(m.id, m.code) for _, m in sent] == [(f"r-{generations.MAX_PENDING_RELOADS}", "overloaded")]  # type: ignore[attr-defined]
