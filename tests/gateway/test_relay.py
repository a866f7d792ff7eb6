"""Relay: the credit window, the output limit and its marker, the input bound and the hold."""

from __future__ import annotations

import socket

import pytest

from protocol import CHANNELS
from zygote.gateway.relay import MAX_PENDING_INPUT, InputOverflow, Relay


@pytest.fixture
def pair() -> tuple[Relay, dict[str, socket.socket]]:
    pairs = {name: socket.socketpair() for name in CHANNELS}
    relay = Relay.from_fds([pairs[name][0].detach() for name in CHANNELS], credit=100, output_limit=150)
    worker = {name: pairs[name][1] for name in CHANNELS}
    yield relay, worker
    relay.close_all()
    for sock in worker.values():
        sock.close()


def test_reads_stop_at_the_credit_window_and_resume_with_credit(pair: tuple[Relay, dict[str, socket.socket]]) -> None:
    relay, worker = pair
    worker["logs"].sendall(b"x" * 300)
    data, still_open = relay.read("logs")
    assert (len(data), still_open) == (100, True)
    assert relay.readable_fds() == {}, "no credit: the gateway stops reading the worker"
    relay.add_credit(10_000)
    assert relay.credit == 100, "credit never exceeds the window"
    assert len(relay.read("logs")[0]) == 100


def test_the_output_limit_drops_stdout_stderr_once_with_one_marker(
    pair: tuple[Relay, dict[str, socket.socket]],
) -> None:
    relay, worker = pair
    relay.window = relay.credit = 10_000
    worker["stdout"].sendall(b"o" * 100)
    assert len(relay.read("stdout")[0]) == 100
    worker["stderr"].sendall(b"e" * 100)
    assert len(relay.read("stderr")[0]) == 50
    assert relay.take_marker() is True and relay.take_marker() is False
    worker["stderr"].sendall(b"e" * 10)
    assert relay.read("stderr")[0] == b""
    assert relay.dropped == 60
    worker["logs"].sendall(b"l" * 500)
    assert len(relay.read("logs")[0]) == 500, "logs are never truncated"


def test_input_is_held_until_released_then_flows(pair: tuple[Relay, dict[str, socket.socket]]) -> None:
    relay, worker = pair
    relay.add_input(b"frame")
    assert relay.wants_write() is None
    worker["requests"].setblocking(False)
    with pytest.raises(BlockingIOError):
        worker["requests"].recv(10)
    relay.release()
    assert worker["requests"].recv(10) == b"frame"


def test_input_beyond_the_bound_overflows(pair: tuple[Relay, dict[str, socket.socket]]) -> None:
    relay, _ = pair
    relay.add_input(b"x" * (MAX_PENDING_INPUT - 1))
    with pytest.raises(InputOverflow):
        relay.add_input(b"yy")
    assert len(relay.pending_input) == MAX_PENDING_INPUT - 1


def test_eof_closes_the_channel(pair: tuple[Relay, dict[str, socket.socket]]) -> None:
    relay, worker = pair
    for name in CHANNELS:
        worker[name].close()
        assert relay.read(name) == (b"", False)
    assert relay.all_closed
