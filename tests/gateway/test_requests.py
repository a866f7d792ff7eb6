"""RequestTable: every transition, and each request replied exactly once, forgotten exactly once."""

from __future__ import annotations

import socket

from protocol import CHANNELS, Exited, Spawn
from zygote.gateway.relay import Relay
from zygote.gateway.requests import RequestState, RequestTable


def _spawn(request_id: str = "a") -> Spawn:
    return Spawn(id=request_id, path="/dags/f.py", bundle_path="/dags", bundle_name="b", timeout=10.0, cwd="/")


def _relay() -> tuple[Relay, list[socket.socket]]:
    pairs = [socket.socketpair() for _ in CHANNELS]
    return Relay.from_fds([a.detach() for a, _ in pairs], 1024, 0), [b for _, b in pairs]


def test_a_request_moves_checking_queued_dispatched_running_exited_and_is_forgotten_once_replied() -> None:
    table = RequestTable()
    request = table.accept(b"c", _spawn(), 1.0)
    assert (request.state, table.queued, table.waiting) == (RequestState.CHECKING, 0, 1)
    assert table.next_queued() is None, "not queued before its path check passed"
    table.admit(request)
    assert (request.state, table.queued, table.waiting, table.running) == (RequestState.QUEUED, 1, 1, 0)
    assert table.next_queued() is request
    table.dispatch(request, generation=3)
    assert (request.state, request.generation, table.running) == (RequestState.DISPATCHED, 3, 1)
    relay, _peers = _relay()
    assert table.started(request.internal_id, 42, relay) is request
    assert (request.state, request.pid) == (RequestState.RUNNING, 42)
    assert table.exited(request.internal_id, Exited(id=request.internal_id, exit_code=0, outcome="exited"), 2.0)
    assert (request.state, table.running, len(table)) == (RequestState.EXITED, 0, 1)
    assert table.mark_replied(request) is True
    assert table.mark_replied(request) is False
    assert len(table) == 0 and (b"c", "a") not in table
    assert relay.all_closed


def test_a_reply_before_the_slot_closes_keeps_the_request_until_the_forker_answers() -> None:
    table = RequestTable()
    request = table.accept(b"c", _spawn(), 1.0)
    table.admit(request)
    table.next_queued()
    table.dispatch(request, 1)
    assert table.mark_replied(request)
    assert (b"c", "a") not in table, "the id is free for the client again"
    assert table.by_internal(request.internal_id) is request, "the forker still owes a terminal"
    assert table.in_generation(1) == [request]
    table.close_slot(request)
    table.close_slot(request)
    assert table.running == 0 and len(table) == 0


def test_started_for_a_replied_request_closes_the_worker_channels() -> None:
    table = RequestTable()
    request = table.accept(b"c", _spawn(), 1.0)
    table.admit(request)
    table.next_queued()
    table.dispatch(request, 1)
    table.mark_replied(request)
    relay, _peers = _relay()
    assert table.started(request.internal_id, 7, relay) is None
    assert relay.all_closed


def test_replying_to_a_queued_request_takes_it_out_of_the_queue() -> None:
    table = RequestTable()
    first, second = table.accept(b"c", _spawn("a"), 1.0), table.accept(b"c", _spawn("b"), 1.0)
    checking = table.accept(b"c", _spawn("c"), 1.0)
    table.admit(first)
    table.admit(second)
    assert table.mark_replied(first) and table.mark_replied(checking)
    table.admit(checking)
    assert table.queued == 1 and table.waiting == 1 and table.next_queued() is second


def test_unknown_internal_ids_change_nothing() -> None:
    table = RequestTable()
    assert table.exited("r99", Exited(id="r99", exit_code=0, outcome="exited"), 1.0) is None
    assert table.by_internal("r99") is None and table.of_client(b"c") == []


def test_what_a_forker_owes_is_unstarted_spawns_and_exits_of_workers_whose_channels_ended() -> None:
    table = RequestTable()
    first, second, other, running = (table.accept(b"c", _spawn(name), 1.0) for name in ("a", "b", "c", "d"))
    for request in (first, second, other, running):
        table.admit(request)
        assert table.next_queued() is request
    table.dispatch(first, 1, now=10.0)
    table.dispatch(second, 1, now=12.0)
    table.dispatch(other, 2, now=5.0)
    table.dispatch(running, 1, now=3.0)
    relay, _peers = _relay()
    table.started(running.internal_id, 9, relay, now=4.0)
    assert sorted(table.owed_since(1)) == [10.0, 12.0], "a running worker owes nothing yet"
    table.channels_ended(running, 20.0)
    table.channels_ended(running, 25.0)
    assert sorted(table.owed_since(1)) == [10.0, 12.0, 20.0]
    assert table.mark_replied(first)
    assert sorted(table.owed_since(1)) == [10.0, 12.0, 20.0], "replied, the forker still owes its answer"
    table.exited(running.internal_id, Exited(id=running.internal_id, exit_code=0, outcome="exited"), 21.0)
    table.close_slot(second)
    assert table.owed_since(1) == [10.0]
    assert table.owed_since(2) == [5.0]
    assert table.owed_since(3) == []
