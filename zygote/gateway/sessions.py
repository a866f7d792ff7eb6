"""Client sessions on the ROUTER: the handshake, heartbeats, and every send to a client.

A session starts with an accepted ``hello`` and ends when its client is gone: its connection
closed (the ROUTER's monitor names the fd of each closed connection; a session knows the fd its
``hello`` came on; closed fds are read before each ``hello`` is taken, because the kernel reuses a
closed connection's fd for the next one), a send found it unreachable, or it
stopped reading until its send queue filled (``SNDHWM``). Silence alone ends nothing: a client
that is connected but silent is frozen (SIGSTOP, a debugger, CPU starvation), not dead, and its
workers run on until their own timeout; it is logged once as ``client.silent``. The session
keeps the client's ``hello.process`` (what a worker of this client must see: secret material, never
logged or reported) until it ends. Ending a session is reported to the gateway through
``on_gone``, which settles that client's requests.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from protocol import Error, ErrorCode, Heartbeat, Hello, Message, Welcome
from zygote.gateway.replies import encode_reply
from zygote.handshake import config_mismatch, version_mismatch
from zygote.logs import get_logger

log = get_logger(__name__)

CLIENT_ROLE = "client"
MAX_SESSIONS = 4096
"""Sessions the gateway keeps; a ``hello`` beyond is refused (each session holds a client's environment)."""


@dataclass
class Session:
    name: str
    role: str
    last_seen: float
    last_load: float
    """When this session last got ``load`` (welcome or heartbeat): every ``heartbeat_interval``, busy or idle,
    because the client counts the spawns it sends against the last load it saw."""
    process: dict[str, Any] = field(default_factory=dict, repr=False)
    fd: int = -1
    """The connection's fd inside libzmq (``SRCFD``), matched against disconnect events."""
    silent: bool = False


@dataclass(frozen=True)
class Handshake:
    """What a ``hello`` is checked against and what ``welcome`` announces."""

    instance: str
    versions: dict[str, Any]
    fingerprint: dict[str, str]
    heartbeat_interval: float
    credit_window: int


GoneCallback = Callable[[bytes, Session, str], None]
ClosedFds = Callable[[], list[int]]
"""Fds of the connections that closed since the last call (the ROUTER monitor's, never blocks)."""


class Sessions:
    """Every accepted session by routing id, and the one way to send to a client."""

    def __init__(self, router: zmq.Socket[Any], on_gone: GoneCallback, closed_fds: ClosedFds) -> None:
        self.router = router
        self.on_gone = on_gone
        self.closed_fds = closed_fds
        self._sessions: dict[bytes, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, client: bytes) -> Session | None:
        return self._sessions.get(client)

    def touch(self, client: bytes) -> Session | None:
        """The client's session, marked as heard from now; None before its ``hello``."""
        session = self._sessions.get(client)
        if session is not None:
            session.last_seen = time.monotonic()
            if session.silent:
                session.silent = False
                log.info("client.resumed", client=session.name)
        return session

    def hello(self, client: bytes, hello: Hello, handshake: Handshake, load: dict[str, Any], fd: int) -> None:
        """Answer ``hello``: ``welcome`` (and a session) or the error that refuses it.

        Closed connections are read first: a connection that closed before this one opened may
        have had the same fd, and its disconnect, read after this session exists, would end it.
        """
        self.read_disconnects()
        problem, code = _refusal(hello, handshake)
        if not problem and client not in self._sessions and len(self._sessions) >= MAX_SESSIONS:
            problem, code = f"the gateway already has {MAX_SESSIONS} sessions", ErrorCode.OVERLOADED
        if problem:
            log.error("client.refused", client=hello.client, reason=problem)
            self.send(client, Error(id="", code=code.value, message=problem))
            return
        now = time.monotonic()
        self._sessions[client] = Session(hello.client, hello.role, now, now, dict(hello.process), fd)
        self.send(client, _welcome(handshake, load))
        log.info("client.connected", client=hello.client, role=hello.role)

    def heartbeat(self, now: float, timeout: float, interval: float, load: dict[str, Any]) -> None:
        """Send every session a fresh ``load`` each ``interval``; note (once) those silent past ``timeout``, but keep them."""
        for client, session in list(self._sessions.items()):
            if now - session.last_seen > timeout and not session.silent:
                session.silent = True
                log.warning("client.silent", client=session.name, silent_s=round(now - session.last_seen, 1))
            if now - session.last_load >= interval:
                self.send(client, Heartbeat(load=load))

    def broadcast(self, message: Message) -> None:
        for client in list(self._sessions):
            self.send(client, message)

    def read_disconnects(self) -> None:
        """End the sessions whose connections closed since the last read."""
        for fd in self.closed_fds():
            for client, session in list(self._sessions.items()):
                if session.fd == fd:
                    self.drop(client, "disconnected")

    def drop(self, client: bytes, why: str) -> None:
        session = self._sessions.pop(client, None)
        if session is not None:
            self.on_gone(client, session, why)

    def send(self, client: bytes, message: Message) -> None:
        data = encode_reply(message)
        if data is None:
            return
        try:
            self.router.send_multipart([client, data], zmq.NOBLOCK)
        except zmq.Again:
            # The peer's queue is full (SNDHWM): it has not read thousands of messages. For a session
            # that is "gone" (its requests would otherwise wait forever); for an unknown peer, a drop.
            self.drop(client, "not reading")
            return
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                self.drop(client, "unreachable")
                return
            log.error("client.send_failed", error=str(exc), type=message.TYPE)
            return
        session = self._sessions.get(client)
        if session is not None and isinstance(message, Heartbeat | Welcome):
            session.last_load = time.monotonic()


def _refusal(hello: Hello, handshake: Handshake) -> tuple[str, ErrorCode]:
    theirs = {"protocol": hello.protocol, "airflow": hello.airflow, "python": hello.python}
    problem = version_mismatch(handshake.versions, theirs, hello.role)
    if problem:
        return problem, ErrorCode.VERSION_MISMATCH
    if hello.role == CLIENT_ROLE:
        return config_mismatch(handshake.fingerprint, hello.config), ErrorCode.CONFIG_MISMATCH
    return "", ErrorCode.CONFIG_MISMATCH


def _welcome(handshake: Handshake, load: dict[str, Any]) -> Welcome:
    return Welcome(
        server=handshake.instance,
        protocol=handshake.versions["protocol"],
        airflow=handshake.versions["airflow"],
        python=handshake.versions["python"],
        gateway_pid=os.getpid(),
        heartbeat_interval=handshake.heartbeat_interval,
        credit_window=handshake.credit_window,
        load=load,
    )
