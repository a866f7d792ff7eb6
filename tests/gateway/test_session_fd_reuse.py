"""A closed connection's disconnect never ends the session of a new connection that reuses its fd.

The kernel hands a new connection the lowest free fd, often the one a connection that just closed
had. If the gateway read the new connection's ``hello`` before the old connection's disconnect
event, a session matched by fd alone would be ended by the stale event and its requests settled
``client_gone``. Real ROUTER, real monitor, real peers: the test holds the old disconnect unread
(as a busy loop reading a batch of messages would) while the new peer says ``hello``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from protocol import PROTOCOL_VERSION, Hello, Welcome, decode, encode
from tests.zygote_harness import socket_endpoint
from zygote.config import Settings
from zygote.gateway.sessions import Handshake, Session, Sessions
from zygote.transport import ServerEndpoint, bind_server

VERSIONS = {"protocol": PROTOCOL_VERSION, "airflow": "3.3.0", "python": "3.11.0"}
HANDSHAKE = Handshake("test", VERSIONS, {}, heartbeat_interval=5.0, credit_window=8)


@pytest.fixture
def endpoint() -> Iterator[ServerEndpoint]:
    context: zmq.Context[Any] = zmq.Context()
    bound = bind_server(context, Settings(socket=socket_endpoint()))
    yield bound
    bound.close(linger_ms=0)
    context.destroy(linger=0)  # closes the peers a failed test left open


def _say_hello(endpoint: ServerEndpoint, name: str) -> zmq.Socket[Any]:
    peer: zmq.Socket[Any] = endpoint.router.context.socket(zmq.DEALER)
    peer.connect(endpoint.router.last_endpoint.decode())
    peer.send(encode(Hello(client=name, role="control", **VERSIONS)))
    return peer


def _take_hello(endpoint: ServerEndpoint, sessions: Sessions) -> tuple[bytes, int]:
    assert endpoint.router.poll(10_000), "the hello never arrived"
    routing_id, frame = endpoint.router.recv_multipart(copy=False)
    fd = int(frame.get(zmq.SRCFD))
    hello = decode(frame.bytes)
    assert isinstance(hello, Hello)
    sessions.hello(routing_id.bytes, hello, HANDSHAKE, {}, fd)
    return routing_id.bytes, fd


def _wait_closed(fd: int, was: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != was:
                return
        except FileNotFoundError:
            return
        time.sleep(0.005)
    raise AssertionError(f"fd {fd} ({was}) was never closed")


def test_a_stale_disconnect_on_a_reused_fd_ends_only_the_closed_connection(endpoint: ServerEndpoint) -> None:
    gone: list[tuple[str, str]] = []

    def on_gone(_client: bytes, session: Session, why: str) -> None:
        gone.append((session.name, why))

    sessions = Sessions(endpoint.router, on_gone, endpoint.disconnected_fds)
    old = _say_hello(endpoint, "old")
    _, old_fd = _take_hello(endpoint, sessions)
    assert len(sessions) == 1
    old_socket = os.readlink(f"/proc/self/fd/{old_fd}")  # libzmq's I/O thread is in this process
    old.close(linger=0)
    assert endpoint.monitor.poll(10_000), "the old connection's disconnect was never reported"
    _wait_closed(old_fd, old_socket)  # libzmq reports the disconnect just before it closes the fd

    new = _say_hello(endpoint, "new")
    new_id, new_fd = _take_hello(endpoint, sessions)  # the old disconnect is still unread here
    assert new_fd == old_fd, "the kernel did not reuse the fd: the case under test did not happen"
    sessions.read_disconnects()

    assert gone == [("old", "disconnected")]
    session = sessions.get(new_id)
    assert session is not None and session.name == "new"
    assert new.poll(10_000)
    assert isinstance(decode(new.recv()), Welcome)
    new.close(linger=0)
    assert endpoint.monitor.poll(10_000)
    sessions.read_disconnects()
    assert gone == [("old", "disconnected"), ("new", "disconnected")], "the new connection's own close ends it"
