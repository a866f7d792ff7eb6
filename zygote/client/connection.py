"""The client's session with the zygote, run by one relay thread inside the dag-processor.

How this works: the manager thread calls :meth:`ZygoteConnection.spawn` (blocking until the
zygote says ``started`` or refuses) and :meth:`ZygoteConnection.signal`; both hand commands to the
relay thread, which alone touches the ZeroMQ socket. The relay moves bytes between the zygote and
each request's local socketpairs without ever blocking on a write. Ordering rule: a worker's
output is written into the local sockets first, then its exit code is published on the tracker,
then the local ends are closed (EOF) — so Airflow's ``kill()``/``is_ready``/``close()`` see exactly
what a local child produces. When the zygote goes silent or restarts, running requests end as
``zygote_unavailable`` (never re-run: parse-time side effects) and the relay reconnects.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import zmq

from protocol import (
    MAX_DATA,
    Credit,
    Error,
    ErrorCode,
    Exited,
    Heartbeat,
    Hello,
    Input,
    Message,
    Output,
    ProtocolError,
    Signal,
    Spawn,
    Started,
    Welcome,
    decode,
    encode,
)
from zygote.client.channels import LocalChannels
from zygote.client.ledger import Ledger
from zygote.client.metrics import ZygoteMetrics
from zygote.client.tracker import RemoteTracker
from zygote.config import Settings
from zygote.handshake import config_fingerprint, versions
from zygote.logs import get_logger
from zygote.transport import connect_dealer

log = get_logger(__name__)

RECONNECT_S = 2.0
REFUSED_RETRY_S = 30.0
INPUT_CHUNK = MAX_DATA // 2


class ZygoteUnavailable(Exception):
    """The zygote cannot take this request; ``outcome`` is the ledger outcome."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(f"{outcome}: {detail}")
        self.outcome = outcome
        self.detail = detail


@dataclass
class ClientRequest:
    spawn: Spawn
    channels: LocalChannels
    tracker: RemoteTracker
    lock: threading.Lock = field(default_factory=threading.Lock)
    answered: threading.Event = field(default_factory=threading.Event)
    started: Started | None = None
    refusal: ZygoteUnavailable | None = None
    abandoned: bool = False
    pending: dict[str, bytearray] = field(default_factory=dict)
    owed_credit: int = 0
    exited: Exited | None = None
    failure: tuple[str, str] | None = None
    sent_at: float = 0.0

    def has_pending(self) -> bool:
        return any(self.pending.values())


class ZygoteConnection:
    """Owns the DEALER socket and the relay thread."""

    def __init__(self, settings: Settings, ledger: Ledger, metrics: ZygoteMetrics | None = None) -> None:
        self.settings = settings
        self.ledger = ledger
        self.metrics = metrics or ZygoteMetrics.from_airflow_config()
        self.context: zmq.Context[Any] = zmq.Context()
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._requests: dict[str, ClientRequest] = {}
        self._dealer: zmq.Socket[Any] | None = None
        self._state = "connecting"  # the relay connects as soon as it starts
        self._why = "not connected yet"
        self._ready = threading.Event()
        self._handshake_deadline = 0.0
        self._next_connect_at = 0.0
        self._last_recv = self._last_send = 0.0
        self._heartbeat_interval = settings.heartbeat_interval
        self._outage_warned = False
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="zygote-relay", daemon=True)
        self._thread.start()

    # --- manager thread ----------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._ready.is_set()

    @property
    def why_unavailable(self) -> str:
        return self._why

    def spawn(self, spawn: Spawn, channels: LocalChannels, tracker: RemoteTracker) -> Started:
        """Ask for a worker; block until it is forked. Raises :class:`ZygoteUnavailable`."""
        if not self._ready.wait(self.settings.connect_timeout if self._state == "connecting" else 0):
            raise ZygoteUnavailable("zygote_unavailable", self._why)
        request = ClientRequest(spawn, channels, tracker)
        self._command("spawn", request)
        if not request.answered.wait(self.settings.connect_timeout):
            with request.lock:
                if not request.answered.is_set():
                    request.abandoned = True
            self._command("signal", (spawn.id, signal.SIGKILL))
        with request.lock:
            if request.abandoned:
                raise ZygoteUnavailable("zygote_unavailable", "no answer to the parse request in time")
        if request.refusal is not None:
            raise request.refusal
        assert request.started is not None
        return request.started

    def signal(self, request_id: str, signum: int) -> None:
        self._command("signal", (request_id, signum))

    def note_fallback(self) -> bool:
        """True the first time in an outage: the caller logs the warning once."""
        if self._outage_warned:
            return False
        self._outage_warned = True
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Kill the remaining remote workers and stop the relay."""
        self._command("close", None)
        self._thread.join(timeout)

    def _command(self, name: str, payload: Any) -> None:
        self._commands.put((name, payload))
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    # --- relay thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._closing:
                self._poll_once()
        except Exception:
            log.exception("zygote.relay_crashed")
            self._lose_connection("the client relay crashed")
        finally:
            self._shutdown()

    def _poll_once(self) -> None:
        now = time.monotonic()
        if self._dealer is None and now >= self._next_connect_at:
            self._connect()
        poller = zmq.Poller()
        poller.register(self._wake_r.fileno(), zmq.POLLIN)
        if self._dealer is not None:
            poller.register(self._dealer, zmq.POLLIN)
        handlers: dict[int, tuple[ClientRequest, str]] = {}
        for request in self._requests.values():
            self._register_local(poller, handlers, request)
        for target, mask in poller.poll(self._timeout_ms()):
            self._on_event(target, mask, handlers)
        self._on_timers(time.monotonic())

    def _register_local(
        self, poller: zmq.Poller, handlers: dict[int, tuple[ClientRequest, str]], request: ClientRequest
    ) -> None:
        for name, sock in request.channels.child.items():
            flags = zmq.POLLIN if name == "requests" and request.started is not None else 0
            if request.pending.get(name):
                flags |= zmq.POLLOUT
            if flags:
                poller.register(sock.fileno(), flags)
                handlers[sock.fileno()] = (request, name)

    def _timeout_ms(self) -> int:
        return int(min(self._heartbeat_interval, RECONNECT_S) * 1000)

    def _on_event(self, target: Any, mask: int, handlers: dict[int, tuple[ClientRequest, str]]) -> None:
        if target is self._dealer:
            self._read_dealer()
        elif target == self._wake_r.fileno():
            self._read_commands()
        elif target in handlers:
            request, name = handlers[target]
            if mask & zmq.POLLOUT:
                self._flush_local(request, name)
            if mask & zmq.POLLIN:
                self._read_local(request)

    def _on_timers(self, now: float) -> None:
        if self._state == "connecting" and now > self._handshake_deadline:
            self._drop_dealer(
                f"no handshake answer from {self.settings.socket} within {self.settings.connect_timeout} s"
            )
        if self._state == "ready" and now - self._last_recv > self.settings.heartbeat_timeout:
            self._lose_connection(f"no traffic from the zygote for {self.settings.heartbeat_timeout} s")
        if self._state == "ready" and now - self._last_send >= self._heartbeat_interval:
            self._send(Heartbeat())
        for request in list(self._requests.values()):
            self._send_credit(request)
            self._maybe_finish(request)

    # --- connection --------------------------------------------------------------------------------

    def _connect(self) -> None:
        identity = f"dag-processor-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self._dealer = connect_dealer(self.context, self.settings, identity.encode())
        except Exception as exc:
            self._why = f"cannot connect to {self.settings.socket}: {exc}"
            self._next_connect_at = time.monotonic() + REFUSED_RETRY_S
            return
        ours = versions()
        self._state = "connecting"
        self._handshake_deadline = time.monotonic() + self.settings.connect_timeout
        self._send(
            Hello(
                client=identity,
                role="client",
                protocol=ours["protocol"],
                airflow=ours["airflow"],
                python=ours["python"],
                config=config_fingerprint(),
            )
        )

    def _read_dealer(self) -> None:
        assert self._dealer is not None
        for _ in range(1000):
            if self._dealer is None:
                return
            try:
                body = self._dealer.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._last_recv = time.monotonic()
            try:
                message = decode(body)
            except ProtocolError as exc:
                log.error("zygote.bad_message", error=str(exc))
                continue
            self._on_message(message)

    def _on_message(self, message: Message) -> None:
        if isinstance(message, Welcome):
            self._on_welcome(message)
        elif isinstance(message, Started):
            self._on_started(message)
        elif isinstance(message, Output):
            self._on_output(message)
        elif isinstance(message, Exited):
            self._on_exited(message)
        elif isinstance(message, Error):
            self._on_error(message)
        elif isinstance(message, Heartbeat) and message.load:
            self.metrics.load_received(message.load)

    def _on_welcome(self, welcome: Welcome) -> None:
        self._state = "ready"
        self._heartbeat_interval = welcome.heartbeat_interval
        self._why = ""
        self._outage_warned = False
        self._ready.set()
        self.metrics.session_connected()
        self.metrics.load_received(welcome.load)
        log.info("zygote.connected", endpoint=self.settings.socket, airflow=welcome.airflow, server=welcome.server)

    def _on_error(self, error: Error) -> None:
        if not error.id:
            self._on_session_error(error)
            return
        request = self._requests.get(error.id)
        if request is None:
            return
        if error.code in (ErrorCode.DUPLICATE_ID.value, ErrorCode.UNKNOWN_ID.value):
            log.warning("zygote.request_error", request_id=error.id, code=error.code, error=error.message)
            return
        if not self._answer(request, None, ZygoteUnavailable(error.code, error.message)):
            self._fail(request, error.code, error.message)

    def _on_session_error(self, error: Error) -> None:
        if error.code in (ErrorCode.VERSION_MISMATCH.value, ErrorCode.CONFIG_MISMATCH.value):
            log.error("zygote.refused", code=error.code, reason=error.message)
            self.metrics.session_refused(error.code)
            self._why = f"{error.code}: {error.message}"
            self._lose_connection(self._why, retry_in=REFUSED_RETRY_S)
        elif error.code == ErrorCode.HELLO_REQUIRED.value:
            self._lose_connection("the zygote restarted", retry_in=0.0)
        else:
            log.error("zygote.session_error", code=error.code, error=error.message)

    def _lose_connection(self, why: str, retry_in: float = RECONNECT_S) -> None:
        if self._state == "ready":
            log.warning("zygote.lost", reason=why, running=len(self._requests))
        self._why = why
        for request in list(self._requests.values()):
            if not self._answer(request, None, ZygoteUnavailable("zygote_unavailable", why)):
                self._fail(request, "zygote_unavailable", why)
        self._drop_dealer(why, retry_in)

    def _drop_dealer(self, why: str, retry_in: float = RECONNECT_S) -> None:
        self._ready.clear()
        self._why = self._why or why
        self._state = "down"
        if self._dealer is not None:
            self._dealer.close(linger=0)
            self._dealer = None
        self._next_connect_at = time.monotonic() + retry_in

    def _send(self, message: Message) -> None:
        if self._dealer is None:
            return
        try:
            self._dealer.send(encode(message), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.error("zygote.send_failed", error=str(exc), type=message.TYPE)
            return
        self._last_send = time.monotonic()

    # --- commands ----------------------------------------------------------------------------------

    def _read_commands(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            self._wake_r.recv(4096)
        while True:
            try:
                name, payload = self._commands.get_nowait()
            except queue.Empty:
                return
            if name == "spawn":
                self._start(payload)
            elif name == "signal":
                self._signal(*payload)
            elif name == "close":
                self._closing = True

    def _start(self, request: ClientRequest) -> None:
        if self._state != "ready":
            self._answer(request, None, ZygoteUnavailable("zygote_unavailable", self._why))
            return
        self._requests[request.spawn.id] = request
        request.sent_at = time.monotonic()
        self._send(request.spawn)

    def _signal(self, request_id: str, signum: int) -> None:
        request = self._requests.get(request_id)
        if request is not None and request.exited is None and request.failure is None:
            self._send(Signal(id=request_id, signum=signum))

    # --- per-request relay -------------------------------------------------------------------------

    def _answer(self, request: ClientRequest, started: Started | None, refusal: ZygoteUnavailable | None) -> bool:
        """Resolve the manager's wait for ``started``; False if it was already resolved."""
        with request.lock:
            if request.answered.is_set():
                return False
            request.started, request.refusal = started, refusal
            request.answered.set()
            abandoned = request.abandoned
        if refusal is not None or abandoned:
            self._requests.pop(request.spawn.id, None)
        return True

    def _on_started(self, started: Started) -> None:
        request = self._requests.get(started.id)
        if request is None:
            return
        request.tracker.remote_pid = started.pid
        if not self._answer(request, started, None) or request.abandoned:
            self._send(Signal(id=started.id, signum=signal.SIGKILL))
        else:
            self.metrics.parse_started()

    def _on_output(self, output: Output) -> None:
        request = self._requests.get(output.id)
        if request is None:
            return
        if output.channel == "crash":
            _write_all(2, output.data)
            request.owed_credit += len(output.data)
            return
        if output.channel not in request.channels.child:
            request.owed_credit += len(output.data)
            return
        request.pending.setdefault(output.channel, bytearray()).extend(output.data)
        self._flush_local(request, output.channel)

    def _flush_local(self, request: ClientRequest, name: str) -> None:
        pending = request.pending.get(name)
        sock = request.channels.child.get(name)
        while pending and sock is not None:
            try:
                sent = sock.send(pending)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                request.owed_credit += len(pending)
                pending.clear()
                return
            del pending[:sent]
            request.owed_credit += sent

    def _read_local(self, request: ClientRequest) -> None:
        sock = request.channels.child.get("requests")
        if sock is None:
            return
        try:
            data = sock.recv(INPUT_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data and request.exited is None:
            self._send(Input(id=request.spawn.id, data=data))

    def _send_credit(self, request: ClientRequest) -> None:
        if request.owed_credit > 0 and request.exited is None and request.failure is None:
            self._send(Credit(id=request.spawn.id, size=request.owed_credit))
            request.owed_credit = 0

    def _on_exited(self, exited: Exited) -> None:
        request = self._requests.get(exited.id)
        if request is not None:
            request.exited = exited
            self._maybe_finish(request)

    def _fail(self, request: ClientRequest, outcome: str, detail: str) -> None:
        """A started request that will get no ``exited``: tell the per-file log, then end it."""
        if request.failure is not None or request.exited is not None:
            return
        request.failure = (outcome, detail)
        line = f"[airflow-zygote] parse ended without a result: {outcome}: {detail}\n"
        request.pending.setdefault("stderr", bytearray()).extend(line.encode())
        self._flush_local(request, "stderr")
        self._maybe_finish(request)

    def _maybe_finish(self, request: ClientRequest, force: bool = False) -> None:
        """Publish the exit only once every byte is local; then close the local ends."""
        if request.exited is None and request.failure is None:
            return
        if request.has_pending() and not force:
            return
        self._requests.pop(request.spawn.id, None)
        if request.exited is not None:
            exit_code, outcome, stats = request.exited.exit_code, request.exited.outcome, dict(request.exited.stats)
            detail = ""
        else:
            assert request.failure is not None
            exit_code, stats = 1, {}
            outcome, detail = request.failure
        start = stats.get("start_monotonic")
        if isinstance(start, float):
            stats["dispatch_ms"] = (start - request.sent_at) * 1000
        if not request.abandoned:
            self.ledger.close(request.spawn.id, outcome, exit_code=exit_code, detail=detail, stats=stats)
            self.metrics.parse_finished(outcome, stats)
        request.tracker.publish_exit(exit_code)
        request.channels.close_children()

    def _shutdown(self) -> None:
        for request in list(self._requests.values()):
            self._send(Signal(id=request.spawn.id, signum=signal.SIGKILL))
            if not self._answer(request, None, ZygoteUnavailable("zygote_unavailable", "client shutting down")):
                self._fail(request, "zygote_unavailable", "the dag-processor is shutting down")
                self._maybe_finish(request, force=True)
        if self._dealer is not None:
            self._dealer.close(linger=1000)
            self._dealer = None
        self.context.term()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                return
            continue
        view = view[written:]
