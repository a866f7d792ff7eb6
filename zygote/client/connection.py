"""The client's link to the zygote: a facade for the manager thread over one relay thread.

How this works: the manager thread calls :meth:`ZygoteConnection.admit` (decides at once from the
session's published :class:`~zygote.client.session.Availability`; waits only while a handshake is
in progress, at most ``HANDSHAKE_GRACE_S`` per connection attempt), then :meth:`submit`, which
queues the request and returns: the relay thread sends it, and the worker's pid, output and exit
arrive later (:mod:`zygote.client.relay`). :meth:`signal` forwards Airflow's kills. Only the relay
thread touches ZeroMQ; it reconnects after an outage and restarts its loop after a bug, so the
zygote is never "down for the life of the process".
"""

from __future__ import annotations

import contextlib
import queue
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import zmq

from protocol import Error, ErrorCode, Signal, Spawn, Started
from zygote.client.channels import LocalChannels
from zygote.client.ledger import Ledger
from zygote.client.local_child import start_local_child
from zygote.client.metrics import ZygoteMetrics
from zygote.client.notes import FallbackNotes
from zygote.client.relay import ClientRequest, Relay
from zygote.client.session import RECONNECT_S, Admission, Session, SessionState, admit
from zygote.client.tracker import RemoteTracker
from zygote.config import Settings
from zygote.handshake import client_hello
from zygote.logs import get_logger

log = get_logger(__name__)

RELAY_SWITCH_INTERVAL_S = 0.001
"""The dag-processor's GIL switch interval once the relay thread runs (CPython's default is 5 ms)."""


class ZygoteUnavailable(Exception):
    """The zygote cannot take this request now; ``outcome`` is the ledger outcome."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(f"{outcome}: {detail}")
        self.outcome = outcome
        self.detail = detail


@dataclass(frozen=True)
class _Submit:
    request: ClientRequest


@dataclass(frozen=True)
class _Signal:
    request_id: str
    signum: int


class ZygoteConnection:
    """Owns the relay thread; every public method is for the manager thread and returns at once."""

    def __init__(self, settings: Settings, ledger: Ledger) -> None:
        self.settings = settings
        self.ledger = ledger
        self.notes = FallbackNotes()
        self.context: zmq.Context[Any] = zmq.Context()
        self.metrics = ZygoteMetrics.from_airflow_config()
        self._session = Session(settings, self.context, client_hello("dag-processor", settings), self.metrics)
        self._relay = Relay(
            ledger, self._session.send, self.notes, settings.fallback, start_local_child, metrics=self.metrics
        )
        self._commands: queue.SimpleQueue[_Submit | _Signal | None] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sent: tuple[int, int] = (0, 0)
        self._closing = False
        # The relay thread shares the GIL with the manager's loop: at the default 5 ms switch
        # interval each of its hops may wait that long for a busy manager to let go.
        sys.setswitchinterval(min(sys.getswitchinterval(), RELAY_SWITCH_INTERVAL_S))
        self._thread = threading.Thread(target=self._run, name="zygote-relay", daemon=True)
        self._thread.start()

    @property
    def available(self) -> bool:
        return self._session.state is SessionState.READY

    def admit(self) -> Admission:
        """Remote or not, now. Waits only for a handshake already in progress (tens of ms at most)."""
        availability = self._session.availability
        wait = availability.handshake_until - time.monotonic()
        if availability.state is not SessionState.READY and wait > 0:
            self._session.ready_event.wait(wait)
            availability = self._session.availability
        epoch, used = self._sent
        used = used if epoch == availability.epoch else 0
        admission = admit(availability, used, time.monotonic())
        if admission.remote:
            self._sent = (availability.epoch, used + 1)
        return admission

    def wait_ready(self, timeout: float) -> bool:
        """Before the manager's loop: give the first handshake its chance (bounded)."""
        return self._session.ready_event.wait(timeout)

    def refused(self, request_id: str, path: str, admission: Admission) -> ZygoteUnavailable:
        """Record a request decided at once and never sent; the caller falls back."""
        self.ledger.record(request_id, path, admission.kind, admission.detail)
        return ZygoteUnavailable(admission.kind, admission.detail)

    def submit(self, spawn: Spawn, channels: LocalChannels, tracker: RemoteTracker, first_input: bytes = b"") -> None:
        """Queue an admitted request; the relay sends it (and ``first_input`` right after), its pid and output arrive later."""
        answer_by = time.monotonic() + self.settings.spawn_timeout
        request = ClientRequest(spawn, channels, tracker, answer_by=answer_by, first_input=first_input)
        self._command(_Submit(request))

    def signal(self, request_id: str, signum: int) -> None:
        self._command(_Signal(request_id, signum))

    def close(self, timeout: float = 5.0) -> None:
        """Kill the remaining remote workers and stop the relay."""
        self._command(None)
        self._thread.join(timeout)

    def _command(self, command: _Submit | _Signal | None) -> None:
        self._commands.put(command)
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        try:
            while not self._closing:
                try:
                    self._poll_once()
                except Exception:
                    log.exception("zygote.relay_crashed")
                    self._recover("the client relay crashed")
        finally:
            self._shutdown()

    def _recover(self, why: str) -> None:
        """After a bug in the loop: end what was in flight, reconnect later, keep running."""
        try:
            self._relay.lose_all(why)
            self._session.drop(why, RECONNECT_S)
        except Exception:
            log.exception("zygote.relay_recovery_failed")
            time.sleep(RECONNECT_S)

    def _poll_once(self) -> None:
        session = self._session
        if session.dealer is None and time.monotonic() >= session.next_connect_at:
            session.connect(time.monotonic())
        poller = zmq.Poller()
        poller.register(self._wake_r.fileno(), zmq.POLLIN)
        if session.dealer is not None:
            poller.register(session.dealer, zmq.POLLIN)
        handlers = self._relay.register(poller)
        for target, mask in poller.poll(session.timeout_ms()):
            if session.dealer is not None and target is session.dealer:
                self._read_dealer()
            elif target == self._wake_r.fileno():
                self._read_commands()
            elif target in handlers:
                self._relay.on_local_event(*handlers[target], mask)
        self._on_timers(time.monotonic())

    def _read_dealer(self) -> None:
        for message in self._session.receive():
            self._relay.on_message(message)
            if isinstance(message, Error):
                self._session.note_refusal(message.code, time.monotonic())
            elif isinstance(message, Started):
                self._session.note_started()
                self.notes.available()
        self._relay.credit_window = self._session.credit_window
        self._end_session_if_lost()

    def _on_timers(self, now: float) -> None:
        self._session.on_timers(now)
        self._end_session_if_lost()
        if self._relay.expire(now):
            self._session.note_refusal(ErrorCode.NOT_READY.value, now)
        self._relay.send_credits()

    def _end_session_if_lost(self) -> None:
        if self._session.lost is not None:
            why, retry_in = self._session.lost
            self._relay.lose_all(why)
            self._session.drop(why, retry_in)

    def _read_commands(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            self._wake_r.recv(4096)
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            if command is None:
                self._closing = True
            elif isinstance(command, _Submit):
                ready = self._session.state is SessionState.READY
                self._relay.add(command.request, time.monotonic(), ready=ready, early_input=self._session.early_input)
            else:
                self._forward_signal(command)

    def _forward_signal(self, command: _Signal) -> None:
        request = self._relay.requests.get(command.request_id)
        if request is not None and not request.ending:
            self._session.send(Signal(id=command.request_id, signum=command.signum))

    def _shutdown(self) -> None:
        self._relay.shutdown()
        if self._session.dealer is not None:
            self._session.dealer.close(linger=1000)
            self._session.dealer = None
        self.context.term()
