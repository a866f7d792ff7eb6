"""``ipc://`` security: owner-only (or group) directory and socket, and a peer uid check behind them.

The endpoint is bound in this process with :func:`zygote.transport.bind_server`, the function the
gateway uses (a whole zygote adds nothing here but seconds). Peers are real processes: a Python that
imports what it needs, then drops to another uid before it connects, so the kernel's ``SO_PEERCRED``
(which libzmq hands the ZAP handler) names that uid. The uid check is proved with the file-system
permissions deliberately opened up, so that only the check stands between the peer and the socket.
"""

from __future__ import annotations

import grp
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import zmq
from zygote_harness import socket_endpoint

from zygote.config import Settings
from zygote.transport import PeerPolicy, ServerEndpoint, bind_server, ipc_path

NOBODY = 65534
GROUP = "daemon"  # any group the test runs outside of

PEER = r"""
import os, sys, time, zmq
from zmq.utils.monitor import recv_monitor_message
endpoint, uid, gid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if uid != os.getuid():
    os.setgroups([]); os.setgid(gid); os.setuid(uid)
context = zmq.Context()
dealer = context.socket(zmq.DEALER)
dealer.linger = 0
monitor = dealer.get_monitor_socket()
dealer.connect(endpoint)
dealer.send(b"ping")
outcome = "no handshake"
deadline = time.monotonic() + 3  # a refused connect() is retried forever: bound the wait
while monitor.poll(max(1, int((deadline - time.monotonic()) * 1000))) and time.monotonic() < deadline:
    event = recv_monitor_message(monitor)["event"]
    if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
        outcome = "accepted"; break
    if event in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
        outcome = "refused"; break
print(outcome)
"""

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(os.getuid() != 0, reason="needs root to start a peer as nobody")]


@pytest.fixture
def context() -> Iterator[zmq.Context[Any]]:
    ctx: zmq.Context[Any] = zmq.Context()
    yield ctx
    ctx.term()  # hangs if the ZAP handler's sockets were left open


@pytest.fixture
def bound(context: zmq.Context[Any]) -> Iterator[tuple[ServerEndpoint, Path]]:
    endpoint = bind_server(context, Settings(socket=socket_endpoint()))
    path = ipc_path(endpoint.router.last_endpoint.decode())
    assert path is not None
    yield endpoint, path
    endpoint.close(linger_ms=0)


def _connect_as(path: Path, uid: int, gid: int) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PEER, f"ipc://{path}", str(uid), str(gid)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _received(endpoint: ServerEndpoint) -> list[list[bytes]]:
    frames = []
    while endpoint.router.poll(200):
        frames.append(endpoint.router.recv_multipart())
    return frames


def test_directory_and_socket_are_owner_only(bound: tuple[ServerEndpoint, Path]) -> None:
    _, path = bound
    for item, mode in ((path.parent, 0o700), (path, 0o600)):
        info = item.stat()
        assert stat.S_IMODE(info.st_mode) == mode, (item, oct(info.st_mode))
        assert info.st_uid == os.getuid()
    assert stat.S_ISSOCK(path.stat().st_mode)


def test_file_permissions_keep_other_users_out(bound: tuple[ServerEndpoint, Path]) -> None:
    endpoint, path = bound
    assert _connect_as(path, NOBODY, NOBODY) == "no handshake"  # EACCES on connect: never reaches ZAP
    assert _received(endpoint) == []


def test_another_uid_is_refused_even_with_permissions_opened(bound: tuple[ServerEndpoint, Path]) -> None:
    endpoint, path = bound
    os.chmod(path.parent, 0o777)
    os.chmod(path, 0o777)
    with structlog.testing.capture_logs() as logs:
        assert _connect_as(path, NOBODY, NOBODY) == "refused"
    assert _received(endpoint) == []
    [refusal] = [entry for entry in logs if entry["event"] == "client.unauthorized"]
    assert refusal["transport"] == "ipc" and f"uid {NOBODY}" in refusal["reason"]


def test_the_owner_is_accepted(bound: tuple[ServerEndpoint, Path]) -> None:
    endpoint, path = bound
    assert _connect_as(path, os.getuid(), os.getgid()) == "accepted"
    [[_, body]] = _received(endpoint)
    assert body == b"ping"


def test_socket_group_admits_its_members_only(context: zmq.Context[Any]) -> None:
    gid = grp.getgrnam(GROUP).gr_gid
    endpoint = bind_server(context, Settings(socket=socket_endpoint(), socket_group=GROUP))
    try:
        path = ipc_path(endpoint.router.last_endpoint.decode())
        assert path is not None
        for item, mode in ((path.parent, 0o750), (path, 0o660)):
            assert (stat.S_IMODE(item.stat().st_mode), item.stat().st_gid) == (mode, gid), item
        assert _connect_as(path, NOBODY, gid) == "accepted"
        assert [body for _, body in _received(endpoint)] == [b"ping"]
        assert _connect_as(path, NOBODY, NOBODY) == "no handshake"
    finally:
        endpoint.close(linger_ms=0)


def test_peer_policy() -> None:
    """The rules behind the ZAP handler, on the address format libzmq 4.3 gives it."""
    owner = PeerPolicy(uid=1000)
    assert owner.refusal("localhost:1000:1000:42") == ""
    assert "uid 0" in owner.refusal("localhost:0:0:42")  # root is another uid too
    assert "no peer credentials" in owner.refusal("localhost")  # fail closed
    group = PeerPolicy(uid=1000, group_gid=50, group_members=frozenset({"alice"}))
    assert group.refusal("localhost:2000:50:7") == ""
    assert group.refusal("localhost:2000:51:7") != ""
