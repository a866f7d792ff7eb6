"""The client's session with the zygote: connect, hello/welcome, heartbeats, load, reconnect.

How this works: only the relay thread touches a :class:`Session` (and its ZeroMQ DEALER). After
every change it publishes an immutable :class:`Availability`; the manager thread reads that
snapshot in :func:`admit` and decides at once between remote and not-now, without waiting on the
zygote. What it knows: the session state, when the zygote was last heard from (a connected but
silent gateway is frozen: new files go elsewhere, running ones keep their workers), and the
gateway's ``load`` (SPEC 4b) minus what the manager sent since that ``load`` was published.

State machine (transitions only in :meth:`Session._move`)::

    DOWN --connect--> CONNECTING --welcome--> READY
      ^                   |                     |
      +---- timeout, refusal, lost, crash ------+
"""

from __future__ import annotations

import enum
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import zmq

from protocol import (
    Error,
    ErrorCode,
    Heartbeat,
    Hello,
    Message,
    ProtocolError,
    Welcome,
    decode,
    encode,
)
from zygote.client.metrics import ZygoteMetrics
from zygote.config import Settings
from zygote.logs import get_logger
from zygote.transport import connect_dealer

log = get_logger(__name__)

RECONNECT_S = 2.0
REFUSED_RETRY_S = 30.0
HANDSHAKE_GRACE_S = 0.05
"""How long the manager may wait for a handshake in progress, once per connection attempt. The
first attempt of a session may be awaited up to ``connect_timeout``: the dag-processor does that
before its loop starts (``before_run``), so inside the loop only this bound applies."""
SILENT_AFTER_HEARTBEATS = 3
"""A gateway not heard from for this many heartbeat intervals takes no new requests."""
DEFAULT_CREDIT_WINDOW = 4 * 1024 * 1024


class SessionState(enum.Enum):
    DOWN = "down"
    CONNECTING = "connecting"
    READY = "ready"


_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.DOWN: frozenset({SessionState.CONNECTING, SessionState.DOWN}),
    SessionState.CONNECTING: frozenset({SessionState.READY, SessionState.DOWN}),
    SessionState.READY: frozenset({SessionState.DOWN}),
}


class IllegalTransition(Exception):
    """A bug in the client: the state is left unchanged."""


@dataclass(frozen=True)
class Availability:
    """What the manager thread may know, replaced whole by the relay thread."""

    state: SessionState = SessionState.DOWN
    why: str = "not connected yet"
    ready: bool = True
    free: int | None = None
    epoch: int = 0
    last_recv: float = 0.0
    silent_after: float = 3.0
    handshake_until: float = 0.0
    blocked: str = ""
    """A refusal kind the client believes until ``blocked_until``, then lets one probe through."""
    blocked_until: float = 0.0


@dataclass(frozen=True)
class Admission:
    """The manager's decision for one file: ``remote``, or ``kind`` (a ledger outcome) and why."""

    remote: bool
    kind: str = ""
    detail: str = ""


def admit(availability: Availability, sent_since_load: int, now: float) -> Admission:
    """Pure: may a new request go to the zygote right now?"""
    if availability.state is not SessionState.READY:
        return Admission(False, "zygote_unavailable", availability.why)
    silent = now - availability.last_recv
    if silent > availability.silent_after:
        return Admission(False, "zygote_unavailable", f"no traffic from the zygote for {silent:.1f} s")
    if not availability.ready:
        return Admission(False, ErrorCode.NOT_READY.value, "no forker generation is ready")
    if availability.blocked:
        probe = now >= availability.blocked_until and sent_since_load == 0
        return Admission(True) if probe else Admission(False, availability.blocked, "the zygote refused recently")
    if availability.free is not None and availability.free - sent_since_load <= 0:
        return Admission(False, ErrorCode.OVERLOADED.value, "every worker slot and queue place is taken")
    return Admission(True)


class Session:
    """One DEALER at a time; relay thread only. ``availability`` is the snapshot for other threads."""

    def __init__(
        self, settings: Settings, context: zmq.Context[Any], hello: Hello, metrics: ZygoteMetrics | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics or ZygoteMetrics.from_airflow_config()
        self.context = context
        self._hello = hello
        self.state = SessionState.DOWN
        self.why = "not connected yet"
        self.dealer: zmq.Socket[Any] | None = None
        self.heartbeat_interval = settings.heartbeat_interval
        self.credit_window = DEFAULT_CREDIT_WINDOW
        self.early_input = False
        """The gateway holds input sent before ``started`` (``welcome.load``): only then does the first frame go early."""
        self.next_connect_at = 0.0
        self._handshake_deadline = 0.0
        self._last_recv = self._last_send = 0.0
        self._last_tick = time.monotonic()
        self._load: dict[str, Any] = {}
        self._block: tuple[str, float] | None = None
        self._epoch = 0
        self._attempts = 0
        self.lost: tuple[str, float] | None = None
        """Set when a message or a timer ended the session; the connection drops it after failing its requests."""
        self.ready_event = threading.Event()
        self.availability = Availability(handshake_until=time.monotonic() + settings.connect_timeout)

    def _move(self, new: SessionState, why: str = "") -> None:
        if new not in _TRANSITIONS[self.state]:
            raise IllegalTransition(f"session {self.state.value} -> {new.value}")
        self.state = new
        self.why = why
        if new is SessionState.READY:
            self.ready_event.set()
        else:
            self.ready_event.clear()
        self._publish()

    def _publish(self, *, new_load: bool = False, handshake_until: float = 0.0) -> None:
        """``epoch`` changes with every new ``load``: the manager counts its sends since then."""
        load = self._load
        free = load.get("free")
        self._epoch += 1 if new_load else 0
        blocked, blocked_until = self._block or ("", 0.0)
        self.availability = Availability(
            blocked=blocked,
            blocked_until=blocked_until,
            state=self.state,
            why=self.why,
            ready=bool(load.get("ready", True)),
            free=free if isinstance(free, int) and not isinstance(free, bool) else None,
            epoch=self._epoch,
            last_recv=self._last_recv,
            silent_after=max(SILENT_AFTER_HEARTBEATS * self.heartbeat_interval, 1.0),
            handshake_until=handshake_until or self.availability.handshake_until,
        )

    def connect(self, now: float) -> None:
        """Open a DEALER and send the hello; the welcome arrives later."""
        identity = f"dag-processor-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self.dealer = connect_dealer(self.context, self.settings, identity.encode())
        except Exception as exc:
            self.why = f"cannot connect to {self.settings.socket}: {exc}"
            self.next_connect_at = now + REFUSED_RETRY_S
            self._publish()
            return
        self._handshake_deadline = now + self.settings.connect_timeout
        self._move(SessionState.CONNECTING, f"waiting for the handshake with {self.settings.socket}")
        self._attempts += 1
        grace = self.settings.connect_timeout if self._attempts == 1 else HANDSHAKE_GRACE_S
        self._publish(handshake_until=now + grace)
        self.send(replace(self._hello, client=identity))

    def drop(self, why: str, retry_in: float = RECONNECT_S) -> bool:
        """Close the DEALER; True when the session had been ready (its requests are lost)."""
        was_ready = self.state is SessionState.READY
        if was_ready:
            log.warning("zygote.lost", reason=why)
        if self.dealer is not None:
            self.dealer.close(linger=0)
            self.dealer = None
        self._load = {}
        self._block = None
        self.lost = None
        self.next_connect_at = time.monotonic() + retry_in
        self._move(SessionState.DOWN, why)
        return was_ready

    def send(self, message: Message) -> bool:
        if self.dealer is None:
            return False
        try:
            self.dealer.send(encode(message), zmq.NOBLOCK)
        except (zmq.ZMQError, ProtocolError) as exc:
            # An encoding error quotes the value; a hello's value is the environment (secret).
            error = type(exc).__name__ if isinstance(message, Hello) else str(exc)
            log.error("zygote.send_failed", error=error, type=message.TYPE)
            return False
        self._last_send = time.monotonic()
        return True

    def receive(self, limit: int = 1000) -> Iterator[Message]:
        """Messages waiting on the DEALER; session messages are handled here, others yielded."""
        try:
            for _ in range(limit):
                if self.dealer is None:
                    return
                try:
                    body = self.dealer.recv(zmq.NOBLOCK)
                except zmq.Again:
                    return
                self._last_recv = time.monotonic()
                try:
                    message = decode(body)
                except ProtocolError as exc:
                    log.error("zygote.bad_message", error=str(exc))
                    continue
                if not self._on_session_message(message):
                    yield message
        finally:
            self._publish()

    def _on_session_message(self, message: Message) -> bool:
        if isinstance(message, Welcome):
            self._on_welcome(message)
        elif isinstance(message, Heartbeat):
            if message.load:
                self._load = dict(message.load)
                self._block = None
                self._publish(new_load=True)
                self.metrics.load_received(message.load)
        elif isinstance(message, Error) and not message.id:
            self._on_session_error(message)
        else:
            return False
        return True

    def _on_welcome(self, welcome: Welcome) -> None:
        if self.state is not SessionState.CONNECTING:
            return
        self.heartbeat_interval = welcome.heartbeat_interval
        self.credit_window = welcome.credit_window if welcome.credit_window > 0 else DEFAULT_CREDIT_WINDOW
        self._load = dict(welcome.load)
        self.early_input = welcome.load.get("early_input") is True
        self._move(SessionState.READY)
        self._publish(new_load=True)
        self.metrics.session_connected()
        self.metrics.load_received(welcome.load)
        log.info("zygote.connected", endpoint=self.settings.socket, airflow=welcome.airflow, server=welcome.server)

    def _on_session_error(self, error: Error) -> None:
        if error.code in (ErrorCode.VERSION_MISMATCH.value, ErrorCode.CONFIG_MISMATCH.value):
            log.error("zygote.refused", code=error.code, reason=error.message)
            self.metrics.session_refused(error.code)
            self.lost = f"{error.code}: {error.message}", REFUSED_RETRY_S
        elif error.code == ErrorCode.HELLO_REQUIRED.value:
            self.lost = "the zygote restarted", 0.0
        else:
            log.error("zygote.session_error", code=error.code, error=error.message)

    def note_refusal(self, code: str, now: float) -> None:
        """A spawn refused for capacity, or not started in time: a short open circuit.

        Believed until the gateway's next ``load``, a ``started``, or a short while; then one
        request probes (half-open). So a gateway that queues silently (or sends no ``load``) costs
        one waiting request per window, not one per file.
        """
        if code not in (ErrorCode.NOT_READY.value, ErrorCode.OVERLOADED.value):
            return
        self._block = code, now + max(2 * self.heartbeat_interval, 1.0)
        self._publish(new_load=True)

    def note_started(self) -> None:
        """A worker started: the forker forks; whatever refusal was believed is over."""
        if self._block is not None:
            self._block = None
            self._publish(new_load=True)

    def on_timers(self, now: float) -> None:
        """Handshake deadline, silence, our own heartbeat; sets :attr:`lost` when the session ends.

        Silence is only counted while this thread ran: after a gap of our own (the dag-processor
        SIGSTOPped, a debugger, starvation) the peer gets a fresh window, because its heartbeats may
        still sit in the kernel until libzmq's I/O thread, resumed with us, delivers them.
        """
        if now - self._last_tick > 3 * self.timeout_ms() / 1000:  # this thread did not run: we were frozen
            self._last_recv = max(self._last_recv, now)
            self._handshake_deadline = max(self._handshake_deadline, now + self.settings.connect_timeout)
            self._publish()
        self._last_tick = now
        if self.state is SessionState.CONNECTING and now > self._handshake_deadline:
            timeout = self.settings.connect_timeout
            self.lost = f"no handshake answer from {self.settings.socket} within {timeout} s", RECONNECT_S
        elif self.state is SessionState.READY and now - self._last_recv > self.settings.heartbeat_timeout:
            self.lost = f"no traffic from the zygote for {self.settings.heartbeat_timeout} s", RECONNECT_S
        elif self.state is SessionState.READY and now - self._last_send >= self.heartbeat_interval:
            self.send(Heartbeat())

    def timeout_ms(self) -> int:
        return int(min(self.heartbeat_interval, RECONNECT_S) * 1000)
