"""The gateway: owns the ZeroMQ ROUTER socket, relays bytes, never forks a worker.

How this works: one loop polls the ROUTER, the forker links, the workers' channel sockets (only
those whose request has credit) and a signal wakeup socket, with a timeout computed from the next
deadline (heartbeats, drain). Clients must say ``hello`` first. Requests queue here (bounded) and
go to the current forker generation as worker slots free up. A worker's input is held until its
first frame names the file the spawn named (``parse_gate``). A worker's bytes reach the client
before its ``exited``, which is sent only once every channel reached EOF. Signals arrive on a
signalfd, read by the loop; SIGTERM/SIGINT/SIGHUP sent by the zygote's own descendants (DAG code)
are ignored. The gateway is a child subreaper (PID 1 in its container in any case) and reaps any
child that ends; when a forker dies, it kills the process groups of that forker's workers.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import zmq

from protocol import (
    Ack,
    Credit,
    Drain,
    Error,
    ErrorCode,
    Exited,
    Heartbeat,
    Hello,
    Input,
    Message,
    Output,
    ProtocolError,
    Ready,
    Reload,
    Signal,
    Spawn,
    Started,
    StatusReply,
    StatusRequest,
    Welcome,
    decode,
)
from zygote import linux
from zygote.gateway.allowed_paths import path_refusal
from zygote.gateway.boot import GatewayBoot
from zygote.gateway.forker_link import ForkerLink, ForkerState
from zygote.gateway.parse_gate import WAIT, check_first_frame
from zygote.gateway.relay import InputOverflow, Relay
from zygote.gateway.replies import encode_reply, kill_note
from zygote.gateway.requests import Request, RequestState, RequestTable
from zygote.gateway.signals import Delivery, SignalSource, is_descendant
from zygote.gateway.status import StatusBook
from zygote.handshake import config_mismatch, version_mismatch
from zygote.logs import get_logger
from zygote.transport import bind_server

log = get_logger(__name__)

VALID_SIGNALS = frozenset(int(signum) for signum in signal.valid_signals())

CREDIT_WINDOW = 4 * 1024 * 1024
CHANNEL_DRAIN_S = 10.0
"""How long a dead worker's channels may stay open (held by a stray) before they are closed."""
STATUS_WAIT_S = 3.0
MAX_RESTART_BACKOFF_S = 30.0
DRAIN_EXIT_GRACE_S = 10.0
GATEWAY_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
RECENT_WORKERS = 4096
"""Worker pids remembered after they ended, to recognise a signal a worker sent just before dying."""


@dataclass
class Session:
    name: str
    role: str
    last_seen: float
    last_sent: float


class Gateway:
    """The zygote's long-lived process (PID 1 in its container)."""

    def __init__(self, boot: GatewayBoot, *, verbose: bool = False) -> None:
        settings = boot.settings
        self.signals = SignalSource(GATEWAY_SIGNALS)  # first: before any thread inherits the mask
        self.settings = settings
        self.verbose = verbose
        self.instance = uuid.uuid4().hex
        self.started_at = time.monotonic()
        self.roots = tuple(Path(root) for root in boot.roots)
        self.ours = boot.versions
        self.fingerprint = boot.fingerprint
        self.sessions: dict[bytes, Session] = {}
        self.requests = RequestTable()
        self.forkers: dict[int, ForkerLink] = {}
        self.generation = 0
        self.current: ForkerLink | None = None
        self.pending_reloads: list[tuple[bytes, str]] = []
        self.restart_at: float | None = None
        self.restart_backoff = 1.0
        self.draining_since: float | None = None
        self.book = StatusBook()
        self.recent_workers: OrderedDict[int, None] = OrderedDict()
        self.context: zmq.Context[Any] = zmq.Context()
        self.endpoint = bind_server(self.context, settings)
        self.router = self.endpoint.router

    # --- lifecycle -------------------------------------------------------------------------------

    def run(self) -> int:
        linux.become_subreaper()
        self._start_forker()
        log.info(
            "gateway.serving",
            endpoint=self.settings.socket,
            pid=os.getpid(),
            roots=[str(r) for r in self.roots],
        )
        while not self._finished():
            self._poll_once()
        log.info("gateway.stopped", requests=self.book.outcomes)
        self.endpoint.close(linger_ms=1000)
        self.context.term()
        self.signals.close()
        return 0

    def _finished(self) -> bool:
        if self.draining_since is None:
            return False
        if time.monotonic() - self.draining_since > self.settings.drain_timeout + DRAIN_EXIT_GRACE_S:
            for forker in self.forkers.values():
                _kill(forker.pid)
            return True
        return not len(self.requests) and not self.forkers

    def _start_forker(self) -> None:
        self.generation += 1
        forker = ForkerLink.spawn(self.generation, self.verbose)
        self.forkers[forker.pid] = forker
        log.info("forker.starting", generation=forker.generation, pid=forker.pid)

    # --- polling ---------------------------------------------------------------------------------

    def _poll_once(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.signals.fileno(), zmq.POLLIN)
        handlers: dict[int, Any] = {self.signals.fileno(): self._read_signals}
        for forker in self.forkers.values():
            poller.register(forker.sock.fileno(), zmq.POLLIN | (zmq.POLLOUT if forker.out else 0))
            handlers[forker.sock.fileno()] = forker
        for request in self.requests.live():
            self._register_relay(poller, handlers, request)
        events = poller.poll(self._timeout_ms())
        for target, mask in events:
            try:
                self._on_event(target, mask, handlers)
            except Exception:
                # A bug handling one event must not take every client's parses down with it.
                log.exception("gateway.internal_error", target=str(target))
        self._on_timers(time.monotonic())

    def _register_relay(self, poller: zmq.Poller, handlers: dict[int, Any], request: Request) -> None:
        relay = request.relay
        if relay is None:
            return
        write_fd = relay.wants_write()
        for fd, channel in relay.readable_fds().items():
            flags = zmq.POLLIN | (zmq.POLLOUT if fd == write_fd else 0)
            poller.register(fd, flags)
            handlers[fd] = (request, channel)
        if write_fd is not None and write_fd not in handlers:
            poller.register(write_fd, zmq.POLLOUT)
            handlers[write_fd] = (request, "requests")

    def _timeout_ms(self) -> int:
        now = time.monotonic()
        deadlines = [now + self.settings.heartbeat_interval]
        if self.restart_at is not None:
            deadlines.append(self.restart_at)
        return max(0, int((min(deadlines) - now) * 1000))

    def _on_event(self, target: Any, mask: int, handlers: dict[int, Any]) -> None:
        if target is self.router:
            self._read_router()
            return
        handler = handlers.get(target)
        if handler is None:
            return
        if isinstance(handler, ForkerLink):
            self._on_forker_event(handler, mask)
        elif isinstance(handler, tuple):
            self._on_relay_event(handler[0], handler[1], mask)
        else:
            handler()

    def _on_timers(self, now: float) -> None:
        self._heartbeats(now)
        self.book.expire_status(now, self._reply_status)
        for request in self.requests.live():
            if request.state is RequestState.EXITED and now - request.exited_at > CHANNEL_DRAIN_S:
                log.warning("request.channels_forced_closed", request_id=request.spawn.id)
                if request.relay is not None:
                    request.relay.close_all()
                self._maybe_complete(request)
        if self.restart_at is not None and now >= self.restart_at and self.draining_since is None:
            self.restart_at = None
            self._start_forker()

    # --- signals and children --------------------------------------------------------------------

    def _read_signals(self) -> None:
        for delivery in self.signals.read():
            self._on_signal(delivery)

    def _on_signal(self, delivery: Delivery) -> None:
        if delivery.signum == signal.SIGCHLD:
            self._reap()
        elif self._sent_by_descendant(delivery.sender_pid):
            log.warning("gateway.signal_ignored", signum=delivery.signum, sender_pid=delivery.sender_pid)
        elif delivery.signum in (signal.SIGTERM, signal.SIGINT):
            self._begin_drain()
        elif delivery.signum == signal.SIGHUP:
            self._reload(None)

    def _sent_by_descendant(self, pid: int) -> bool:
        """DAG code runs as our uid and may signal us: its SIGTERM must not stop the zygote.

        A sender already gone is known only if it was a worker; a short-lived stray that signals
        and is reaped before this check is taken for an outsider (fail open, so that ``kill`` from
        a shell, which also exits at once, still works).
        """
        return pid in self.recent_workers or is_descendant(pid, os.getpid())

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            forker = self.forkers.get(pid)
            if forker is not None:
                log.info("forker.exited", generation=forker.generation, status=os.waitstatus_to_exitcode(status))
                self._lose_forker(forker)

    def _begin_drain(self) -> None:
        if self.draining_since is not None:
            return
        self.draining_since = time.monotonic()
        log.info("gateway.draining", requests=len(self.requests), deadline_s=self.settings.drain_timeout)
        while (request := self.requests.next_queued()) is not None:
            self._reply_error(request, ErrorCode.SHUTTING_DOWN, "the zygote is shutting down")
        for forker in self.forkers.values():
            forker.send(Drain(deadline_s=self.settings.drain_timeout))
            forker.state = ForkerState.DRAINING

    def _reload(self, requester: tuple[bytes, str] | None) -> None:
        if requester is not None:
            self.pending_reloads.append(requester)
        if self.draining_since is not None:
            return
        if not any(f.state is ForkerState.STARTING for f in self.forkers.values()):
            log.info("gateway.reload", generation=self.generation + 1)
            self._start_forker()

    # --- forkers ---------------------------------------------------------------------------------

    def _on_forker_event(self, forker: ForkerLink, mask: int) -> None:
        if mask & zmq.POLLOUT:
            forker.flush()
        if not mask & zmq.POLLIN:
            return
        try:
            received = forker.receive()
        except ProtocolError as exc:
            log.error("forker.link_corrupt", generation=forker.generation, error=str(exc))
            _kill(forker.pid)
            received = None
        if received is None:
            self._lose_forker(forker)
            return
        for message, fds in received:
            self._on_forker_message(forker, message, fds)

    def _on_forker_message(self, forker: ForkerLink, message: Message, fds: list[int]) -> None:
        if isinstance(message, Ready):
            self._forker_ready(forker, message)
        elif isinstance(message, Started):
            self._worker_started(forker, message, fds)
        elif isinstance(message, Exited):
            self._worker_exited(forker, message)
        elif isinstance(message, Error) and not message.id:
            self._retire_forker(forker, message.message)
        elif isinstance(message, Error):
            self._worker_failed(forker, message)
        elif isinstance(message, StatusReply):
            self.book.forker_status(message.id, message.status, self._reply_status)

    def _retire_forker(self, forker: ForkerLink, why: str) -> None:
        """The forker can no longer fork safely: no new work for it, and a new generation at once."""
        log.error("forker.retired", generation=forker.generation, reason=why)
        forker.state = ForkerState.DRAINING
        if self.current is forker:
            self.current = None
        self._reload(None)

    def _forker_ready(self, forker: ForkerLink, ready: Ready) -> None:
        forker.state = ForkerState.DRAINING if self.draining_since is not None else ForkerState.READY
        self.restart_backoff = 1.0
        log.info("forker.ready", generation=ready.generation, pid=ready.pid, frozen=ready.frozen)
        for old in self.forkers.values():
            if old is not forker and old.state is ForkerState.READY:
                old.send(Drain(deadline_s=self.settings.worker_timeout))
                old.state = ForkerState.DRAINING
        self.current = forker
        for client, request_id in self.pending_reloads:
            self._send(client, Ack(id=request_id, detail=f"generation {ready.generation} is serving"))
        self.pending_reloads.clear()
        self._dispatch()

    def _forker_gone(self, forker: ForkerLink) -> None:
        if forker.state is ForkerState.GONE:
            return
        # A draining forker sends its last ``exited`` and exits at once: SIGCHLD can be handled
        # before that message was read, and it must still count (else the request is lost).
        with contextlib.suppress(ProtocolError):
            while received := forker.receive():
                for message, fds in received:
                    self._on_forker_message(forker, message, fds)
        if forker.state is ForkerState.STARTING and self.current is not None:
            why = f"forker generation {forker.generation} died while starting; generation {self.current.generation} serves"
            for client, request_id in self.pending_reloads:
                self._send(client, Error(id=request_id, code=ErrorCode.INTERNAL.value, message=why))
            self.pending_reloads.clear()
        was_serving = forker.state in (ForkerState.STARTING, ForkerState.READY)
        forker.close()
        self.forkers.pop(forker.pid, None)
        _kill(forker.pid)
        for request in self.requests.live():
            if request.slot_open and request.generation == forker.generation:
                self.requests.close_slot(request)
                self._reply_error(request, ErrorCode.FORKER_LOST, f"forker generation {forker.generation} died")
        if self.current is forker:
            self.current = None
        if was_serving and self.draining_since is None and self.current is None:
            self.restart_at = time.monotonic() + self.restart_backoff
            self.restart_backoff = min(self.restart_backoff * 2, MAX_RESTART_BACKOFF_S)
            log.error("forker.lost", generation=forker.generation, restart_in_s=self.restart_at - time.monotonic())

    def _lose_forker(self, forker: ForkerLink) -> None:
        """The forker died: settle its requests, then kill what its unfinished workers left behind.

        The workers die with their forker (``PR_SET_PDEATHSIG``) but what they started does not, and
        a dead forker cannot clean up. Each worker leads its own process group; a worker whose
        ``exited`` never came has its group killed here (its pid cannot name another group while a
        member of its own lives; the orphans are re-parented to us, the subreaper, and reaped).
        """
        running = [r for r in self.requests.live() if r.slot_open and r.generation == forker.generation and r.pid]
        self._forker_gone(forker)
        for request in running:
            if request.exited is None and linux.kill_group_quietly(request.pid):
                log.warning("worker.group_killed", request_id=request.spawn.id, pgid=request.pid)

    def _dispatch(self) -> None:
        forker = self.current
        if forker is None or forker.state is not ForkerState.READY:
            return
        while self._running_workers() < self.settings.max_workers:
            request = self.requests.next_queued()
            if request is None:
                return
            request.state = RequestState.DISPATCHED
            request.generation = forker.generation
            request.slot_open = True
            forker.send(replace(request.spawn, id=request.internal_id))

    def _running_workers(self) -> int:
        return sum(1 for request in self.requests.live() if request.slot_open)

    def _worker_started(self, forker: ForkerLink, started: Started, fds: list[int]) -> None:
        request = self.requests.by_internal(started.id)
        relay = Relay.from_fds(fds, CREDIT_WINDOW, self.settings.worker_max_output)
        if request is None or request.replied:
            relay.close_all()
            return
        request.relay = relay
        request.pid = started.pid
        request.state = RequestState.RUNNING
        self._remember_worker(started.pid)
        self.book.fork_ms.add(started.fork_ms)
        self._send(request.client, replace(started, id=request.spawn.id))

    def _remember_worker(self, pid: int) -> None:
        self.recent_workers[pid] = None
        self.recent_workers.move_to_end(pid)
        while len(self.recent_workers) > RECENT_WORKERS:
            self.recent_workers.popitem(last=False)

    def _worker_exited(self, forker: ForkerLink, exited: Exited) -> None:
        request = self.requests.by_internal(exited.id)
        if request is None:
            return
        request.exited = exited
        request.exited_at = time.monotonic()
        request.state = RequestState.EXITED
        self.requests.close_slot(request)
        self._maybe_complete(request)
        self._dispatch()

    def _worker_failed(self, forker: ForkerLink, error: Error) -> None:
        request = self.requests.by_internal(error.id)
        if request is None:
            return
        self.requests.close_slot(request)
        self._reply_error(request, ErrorCode(error.code), error.message)
        self._dispatch()

    # --- relaying --------------------------------------------------------------------------------

    def _on_relay_event(self, request: Request, channel: str, mask: int) -> None:
        relay = request.relay
        if relay is None:
            return
        if mask & zmq.POLLOUT:
            relay.flush_input()
        if not mask & zmq.POLLIN or channel not in relay.sockets:
            return
        data, still_open = relay.read(channel)
        if data and not request.replied:
            self._send(request.client, Output(id=request.spawn.id, channel=channel, data=data))
        if relay.take_marker() and not request.replied:
            marker = (
                f"[airflow-zygote] output limit of {relay.output_limit} bytes reached; further stdout/stderr dropped\n"
            )
            self._send(request.client, Output(id=request.spawn.id, channel="stderr", data=marker.encode()))
        if not still_open:
            self._maybe_complete(request)

    def _maybe_complete(self, request: Request) -> None:
        exited = request.exited
        if exited is None or (request.relay is not None and not request.relay.all_closed):
            return
        dropped = request.relay.dropped if request.relay is not None else 0
        message = replace(exited, id=request.spawn.id, stats={**exited.stats, "output_dropped": dropped})
        note = kill_note(message, self.settings)
        if note and not request.replied:
            self._send(request.client, Output(id=request.spawn.id, channel="stderr", data=note.encode()))
        if self.requests.mark_replied(request):
            self.book.finished(message)
            self._send(request.client, message)
            log.info(
                "request.finished",
                request_id=request.spawn.id,
                file=request.spawn.path,
                outcome=message.outcome,
                exit_code=message.exit_code,
                wall_s=round(message.stats.get("wall_s", 0.0), 4),
                fork_ms=round(message.stats.get("fork_ms", 0.0), 3),
                peak_uss=message.stats.get("peak_uss"),
                peak_pss=message.stats.get("peak_pss"),
                queued_s=round(request.exited_at - request.accepted_at - message.stats.get("wall_s", 0.0), 4),
            )

    def _reply_error(self, request: Request, code: ErrorCode, text: str) -> None:
        if self.requests.mark_replied(request):
            self.book.count(code.value)
            self._send(request.client, Error(id=request.spawn.id, code=code.value, message=text))
            log.info(
                "request.finished",
                request_id=request.spawn.id,
                file=request.spawn.path,
                outcome=code.value,
                error=text,
            )

    # --- clients ---------------------------------------------------------------------------------

    def _read_router(self) -> None:
        for _ in range(1000):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._on_client_frames(frames)

    def _on_client_frames(self, frames: list[bytes]) -> None:
        client = frames[0]
        if len(frames) != 2:
            self._send(client, Error(id="", code=ErrorCode.MALFORMED.value, message="expected exactly one frame"))
            return
        try:
            message = decode(frames[1])
        except ProtocolError as exc:
            log.warning("client.bad_message", code=exc.code.value, error=exc.message)
            self._send(client, Error(id="", code=exc.code.value, message=exc.message))
            return
        if isinstance(message, Hello):
            self._hello(client, message)
            return
        session = self.sessions.get(client)
        if session is None:
            self._send(client, Error(id="", code=ErrorCode.HELLO_REQUIRED.value, message="send hello first"))
            return
        session.last_seen = time.monotonic()
        self._on_client_message(client, session, message)

    def _hello(self, client: bytes, hello: Hello) -> None:
        theirs = {"protocol": hello.protocol, "airflow": hello.airflow, "python": hello.python}
        problem = version_mismatch(self.ours, theirs, hello.role)
        code = ErrorCode.VERSION_MISMATCH
        if not problem and hello.role == "client":
            problem, code = config_mismatch(self.fingerprint, hello.config), ErrorCode.CONFIG_MISMATCH
        if problem:
            log.error("client.refused", client=hello.client, reason=problem)
            self._send(client, Error(id="", code=code.value, message=problem))
            return
        now = time.monotonic()
        self.sessions[client] = Session(hello.client, hello.role, now, now)
        self._send(
            client,
            Welcome(
                server=self.instance,
                protocol=self.ours["protocol"],
                airflow=self.ours["airflow"],
                python=self.ours["python"],
                gateway_pid=os.getpid(),
                heartbeat_interval=self.settings.heartbeat_interval,
                credit_window=CREDIT_WINDOW,
            ),
        )
        log.info("client.connected", client=hello.client, role=hello.role)

    def _on_client_message(self, client: bytes, session: Session, message: Message) -> None:
        if isinstance(message, Spawn):
            self._spawn(client, message)
        elif isinstance(message, (Input, Credit, Signal)):
            self._request_message(client, message)
        elif isinstance(message, StatusRequest):
            self._status(client, message.id)
        elif isinstance(message, Reload):
            self._reload((client, message.id))
        elif not isinstance(message, Heartbeat):
            self._send(
                client,
                Error(id="", code=ErrorCode.UNKNOWN_TYPE.value, message=f"{message.TYPE} is not for the gateway"),
            )

    def _spawn(self, client: bytes, spawn: Spawn) -> None:
        if (client, spawn.id) in self.requests:
            self._send(
                client,
                Error(id=spawn.id, code=ErrorCode.DUPLICATE_ID.value, message=f"request {spawn.id} is open"),
            )
            return
        if not (math.isfinite(spawn.timeout) and spawn.timeout > 0):
            # NaN would never expire in the forker; use the zygote's ceiling.
            spawn = replace(spawn, timeout=self.settings.worker_timeout)
        request = self.requests.accept(client, spawn, time.monotonic())
        refusal = self._refusal(spawn)
        if refusal is not None:
            self._reply_error(request, *refusal)
            return
        self._dispatch()

    def _refusal(self, spawn: Spawn) -> tuple[ErrorCode, str] | None:
        if self.draining_since is not None:
            return ErrorCode.SHUTTING_DOWN, "the zygote is shutting down"
        problem = path_refusal(spawn.path, self.roots)
        if problem:
            return ErrorCode.REJECTED_PATH, problem
        if self.requests.queued > self.settings.max_queued:
            return (
                ErrorCode.OVERLOADED,
                f"{self.settings.max_queued} requests are already waiting for a worker",
            )
        return None

    def _request_message(self, client: bytes, message: Input | Credit | Signal) -> None:
        request = self.requests.get((client, message.id))
        if request is None:
            self._send(
                client,
                Error(id=message.id, code=ErrorCode.UNKNOWN_ID.value, message=f"no open request {message.id}"),
            )
        elif isinstance(message, Credit):
            if request.relay is not None:
                request.relay.add_credit(message.size)
        elif isinstance(message, Input):
            self._input(request, message.data)
        elif message.signum in VALID_SIGNALS:
            self._signal(request, message.signum)
        else:
            # Session-level (empty id): an error with the request's id would end it for the client.
            text = f"signal {message.signum} for request {message.id} is not a signal number; ignored"
            self._send(client, Error(id="", code=ErrorCode.MALFORMED.value, message=text))

    def _input(self, request: Request, data: bytes) -> None:
        relay = request.relay
        if relay is None:
            return
        try:
            relay.add_input(data)
        except InputOverflow as exc:
            self._signal(request, signal.SIGKILL)
            self._reply_error(request, ErrorCode.OVERSIZED, str(exc))
            return
        if relay.held:
            self._gate_input(request, relay)

    def _gate_input(self, request: Request, relay: Relay) -> None:
        """Let input through once its first frame asks for the file the spawn named."""
        verdict = check_first_frame(relay.pending_input, request.spawn.path, self.roots)
        if verdict is WAIT:
            return
        if verdict == "":
            relay.release()
            return
        log.warning("request.input_refused", request_id=request.spawn.id, reason=verdict)
        relay.pending_input.clear()
        self._signal(request, signal.SIGKILL)
        self._reply_error(request, ErrorCode.REJECTED_PATH, str(verdict))

    def _signal(self, request: Request, signum: int) -> None:
        if request.state is RequestState.QUEUED:
            cancelled = Exited(id=request.spawn.id, exit_code=-signum, outcome="killed", stats={})
            if self.requests.mark_replied(request):
                self.book.finished(cancelled)
                self._send(request.client, cancelled)
            return
        forker = next((f for f in self.forkers.values() if f.generation == request.generation), None)
        if forker is not None and request.slot_open:
            forker.send(Signal(id=request.internal_id, signum=signum))

    def _heartbeats(self, now: float) -> None:
        for client, session in list(self.sessions.items()):
            if now - session.last_seen > self.settings.heartbeat_timeout:
                self._client_gone(client, "heartbeat timeout")
            elif now - session.last_sent >= self.settings.heartbeat_interval:
                self._send(client, Heartbeat())

    def _client_gone(self, client: bytes, why: str) -> None:
        session = self.sessions.pop(client, None)
        if session is None:
            return
        orphans = [r for r in self.requests.live() if r.client == client]
        if orphans or session.role == "client":
            log.warning("client.gone", client=session.name, reason=why, requests=len(orphans))
        for request in orphans:
            if self.requests.mark_replied(request):
                self.book.count(ErrorCode.CLIENT_GONE.value)
            if request.slot_open:
                self._signal(request, signal.SIGKILL)

    def _send(self, client: bytes, message: Message) -> None:
        data = encode_reply(message)
        if data is None:
            return
        try:
            self.router.send_multipart([client, data], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                self._client_gone(client, "unreachable")
                return
            log.error("client.send_failed", error=str(exc), type=message.TYPE)
            return
        session = self.sessions.get(client)
        if session is not None:
            session.last_sent = time.monotonic()

    # --- status ----------------------------------------------------------------------------------

    def _status(self, client: bytes, request_id: str) -> None:
        forker = self.current
        if forker is None or forker.state is not ForkerState.READY:
            self._reply_status(client, request_id, None)
            return
        internal = self.book.await_forker(client, request_id, time.monotonic() + STATUS_WAIT_S)
        forker.send(StatusRequest(id=internal))

    def _reply_status(self, client: bytes, request_id: str, forker_status: dict[str, Any] | None) -> None:
        status = self.book.assemble(self, forker_status)
        self._send(client, StatusReply(id=request_id, status=status))


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
