"""The gateway: owns the ZeroMQ ROUTER socket, relays bytes, never forks a worker.

How this works: one loop polls the ROUTER, the forker links, the workers' channel sockets (only
those whose request has credit) and a signal wakeup socket, with a timeout computed from the next
deadline (heartbeats, restarts, status waits). Each iteration registers a handler per polled
object and calls the ones that fired. Clients must say ``hello`` first (``sessions``); requests
move through ``dispatcher``; forker generations through ``generations``; filesystem checks run in
threads and answer through a wakeup socket (``path_checks``). A client whose connection closed is
reported by the ROUTER's monitor (read again before each ``hello``, so a new connection that
reuses the fd is never mistaken for the closed one), and is gone at once. Whenever
readiness (``load.ready``) changes, every session gets a heartbeat with the new load at once. Signals arrive on a
signalfd, read by the loop; SIGTERM/SIGINT/SIGHUP sent by the zygote's own descendants (DAG code)
are ignored. The gateway is a child subreaper (PID 1 in its container in any case) and reaps any
child that ends; when a forker dies, it kills the process groups of that forker's workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import zmq

from protocol import (
    Credit,
    Error,
    ErrorCode,
    Exited,
    Heartbeat,
    Hello,
    Input,
    Message,
    ProtocolError,
    Ready,
    Reload,
    Signal,
    Spawn,
    Started,
    StatusReply,
    StatusRequest,
    decode,
)
from zygote import linux
from zygote.gateway.boot import GatewayBoot, adopt_config
from zygote.gateway.dispatcher import CREDIT_WINDOW, Dispatcher
from zygote.gateway.forker_link import ForkerLink
from zygote.gateway.generations import ForkerPool
from zygote.gateway.requests import Request
from zygote.gateway.sessions import Handshake, Session, Sessions
from zygote.gateway.signals import Delivery, SignalSource, is_descendant
from zygote.gateway.status import ForkerSample, GatewaySnapshot, StatusBook, StatusWaits
from zygote.logs import get_logger
from zygote.transport import bind_server

log = get_logger(__name__)

CHANNEL_DRAIN_S = 10.0
"""How long a dead worker's channels may stay open (held by a stray) before they are closed."""
STATUS_WAIT_S = 3.0
MAX_STATUS_WAITS = 256
"""Status requests waiting for the forker's part; beyond, the gateway answers with its own part only."""
DRAIN_EXIT_GRACE_S = 10.0
GATEWAY_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)

Handler = Callable[[int], None]
"""Called with the poll event mask."""


class Gateway:
    """The zygote's long-lived process (PID 1 in its container)."""

    def __init__(self, boot: GatewayBoot, *, verbose: bool = False) -> None:
        self.signals = SignalSource(GATEWAY_SIGNALS)  # first: before any thread inherits the mask
        self.settings = boot.settings
        self.instance = uuid.uuid4().hex
        self.started_at = time.monotonic()
        self.versions = boot.versions
        self.fingerprint = boot.fingerprint
        self.draining_since: float | None = None
        self.book = StatusBook()
        self.status_waits = StatusWaits()
        self.context: zmq.Context[Any] = zmq.Context()
        self.endpoint = bind_server(self.context, self.settings)
        self.router = self.endpoint.router
        self.sessions = Sessions(self.router, self._client_gone, self.endpoint.disconnected_fds)
        self.pool = ForkerPool(verbose, self.sessions.send)
        self.dispatcher = Dispatcher(self.settings, tuple(boot.roots), self.sessions, self.pool, self.book)
        self.was_ready = False

    def run(self) -> int:
        linux.become_subreaper()
        self.pool.start()
        log.info(
            "gateway.serving",
            endpoint=self.settings.socket,
            pid=os.getpid(),
            roots=[str(r) for r in self.dispatcher.roots],
        )
        while not self._finished():
            self._poll_once()
        log.info("gateway.stopped", requests=self.book.outcomes)
        self.dispatcher.checks.close()
        self.endpoint.close(linger_ms=1000)
        self.context.term()
        self.signals.close()
        return 0

    def _finished(self) -> bool:
        if self.draining_since is None:
            return False
        if time.monotonic() - self.draining_since > self.settings.drain_timeout + DRAIN_EXIT_GRACE_S:
            self.pool.kill_all()
            return True
        return not len(self.dispatcher.requests) and not len(self.pool)

    def _poll_once(self) -> None:
        poller = zmq.Poller()
        handlers: dict[Any, Handler] = {}
        self._register(poller, handlers, self.endpoint.monitor, zmq.POLLIN, lambda _: self.sessions.read_disconnects())
        self._register(poller, handlers, self.router, zmq.POLLIN, lambda _: self._read_router())
        self._register(poller, handlers, self.signals.fileno(), zmq.POLLIN, lambda _: self._read_signals())
        checks = self.dispatcher.checks
        self._register(poller, handlers, checks.fileno(), zmq.POLLIN, lambda _: checks.run_callbacks())
        for forker in list(self.pool.forkers.values()):
            flags = zmq.POLLIN | (zmq.POLLOUT if forker.out else 0)
            self._register(poller, handlers, forker.sock.fileno(), flags, self._forker_handler(forker))
        for request in self.dispatcher.requests.live():
            self._register_relay(poller, handlers, request)
        for target, mask in poller.poll(self._timeout_ms()):
            try:
                handlers[target](mask)
            except Exception:
                # A bug handling one event must not take every client's parses down with it.
                log.exception("gateway.internal_error", target=str(target))
        self._on_timers(time.monotonic())

    @staticmethod
    def _register(poller: zmq.Poller, handlers: dict[Any, Handler], target: Any, flags: int, handler: Handler) -> None:
        poller.register(target, flags)
        handlers[target] = handler

    def _forker_handler(self, forker: ForkerLink) -> Handler:
        return lambda mask: self._on_forker_event(forker, mask)

    def _register_relay(self, poller: zmq.Poller, handlers: dict[Any, Handler], request: Request) -> None:
        relay = request.relay
        if relay is None:
            return
        write_fd = relay.wants_write()
        for fd, channel in relay.readable_fds().items():
            flags = zmq.POLLIN | (zmq.POLLOUT if fd == write_fd else 0)
            self._register(poller, handlers, fd, flags, self._relay_handler(request, channel))
        if write_fd is not None and write_fd not in handlers:
            self._register(poller, handlers, write_fd, zmq.POLLOUT, self._relay_handler(request, "requests"))

    def _relay_handler(self, request: Request, channel: str) -> Handler:
        def handle(mask: int) -> None:
            self.dispatcher.relay_event(request, channel, bool(mask & zmq.POLLIN), bool(mask & zmq.POLLOUT))

        return handle

    def _timeout_ms(self) -> int:
        now = time.monotonic()
        deadlines = [
            now + self.settings.heartbeat_interval,
            self.pool.restart_at,
            self.status_waits.next_deadline(),
            self.dispatcher.stall_deadline(),
        ]
        return max(0, int((min(d for d in deadlines if d is not None) - now) * 1000))

    def _on_timers(self, now: float) -> None:
        self.pool.on_timer(now)
        load = self.load()
        if load["ready"] != self.was_ready:
            self.was_ready = load["ready"]
            log.info("gateway.readiness", ready=load["ready"], generation=load["generation"])
            self.sessions.broadcast(Heartbeat(load=load))
        self.sessions.heartbeat(now, self.settings.heartbeat_timeout, self.settings.heartbeat_interval, load)
        self.status_waits.expire(now, self._reply_status)
        self._sample_forker(now)
        self.dispatcher.force_close_drained(now, CHANNEL_DRAIN_S)
        self.dispatcher.on_stall(now)

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
            self.pool.reload(None)

    def _sent_by_descendant(self, pid: int) -> bool:
        """DAG code runs as our uid and may signal us: its SIGTERM must not stop the zygote.

        A sender already gone is known only if it was a worker; a short-lived stray that signals
        and is reaped before this check is taken for an outsider (fail open, so that ``kill`` from
        a shell, which also exits at once, still works).
        """
        return pid in self.dispatcher.recent_workers or is_descendant(pid, os.getpid())

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            forker = self.pool.forkers.get(pid)
            if forker is not None:
                log.info("forker.exited", generation=forker.generation, status=os.waitstatus_to_exitcode(status))
                self._lose_forker(forker)

    def _begin_drain(self) -> None:
        if self.draining_since is not None:
            return
        self.draining_since = time.monotonic()
        log.info("gateway.draining", requests=len(self.dispatcher.requests), deadline_s=self.settings.drain_timeout)
        self.dispatcher.cancel_queued(ErrorCode.SHUTTING_DOWN, "the zygote is shutting down")
        self.pool.drain_all(self.settings.drain_timeout)

    def _on_forker_event(self, forker: ForkerLink, mask: int) -> None:
        if mask & zmq.POLLOUT:
            forker.flush()
        if not mask & zmq.POLLIN:
            return
        try:
            received = forker.receive()
        except ProtocolError as exc:
            log.error("forker.link_corrupt", generation=forker.generation, error=str(exc))
            linux.kill_quietly(forker.pid)
            received = None
        if received is None:
            self._lose_forker(forker)
            return
        for message, fds in received:
            self._on_forker_message(forker, message, fds)

    def _on_forker_message(self, forker: ForkerLink, message: Message, fds: list[int]) -> None:
        if isinstance(message, Ready):
            self._adopt(message)
            self.pool.ready(forker, message, self.settings.worker_timeout)
            self.dispatcher.dispatch()
        elif isinstance(message, Started):
            self.dispatcher.worker_started(message, fds)
        elif isinstance(message, Exited):
            self.dispatcher.worker_exited(message)
        elif isinstance(message, Error) and not message.id:
            self.pool.retire(forker, message.message)
            self._refuse_queued_if_unready()
        elif isinstance(message, Error):
            self.dispatcher.worker_failed(message)
        elif isinstance(message, StatusReply) and message.id == ForkerSample.SAMPLE_ID:
            self.book.forker_sample.record(message.status)
        elif isinstance(message, StatusReply):
            self.status_waits.answered(message.id, message.status, self._reply_status)

    def _lose_forker(self, forker: ForkerLink) -> None:
        """The forker died: settle its requests, then kill what its unfinished workers left behind.

        The workers die with their forker (``PR_SET_PDEATHSIG``) but what they started does not, and
        a dead forker cannot clean up. Each worker leads its own process group; a worker whose
        ``exited`` never came has its group killed here (its pid cannot name another group while a
        member of its own lives; the orphans are re-parented to us, the subreaper, and reaped).
        """
        if forker.pid not in self.pool.forkers:
            return
        # A draining forker sends its last ``exited`` and exits at once: SIGCHLD can be handled
        # before that message was read, and it must still count (else the request is lost).
        with contextlib.suppress(ProtocolError):
            while received := forker.receive():
                for message, fds in received:
                    self._on_forker_message(forker, message, fds)
        self.pool.lost(forker)
        for request in self.dispatcher.generation_lost(forker.generation):
            if linux.kill_group_quietly(request.pid):
                log.warning("worker.group_killed", request_id=request.spawn.id, pgid=request.pid)
        self._refuse_queued_if_unready()

    def _refuse_queued_if_unready(self) -> None:
        """No generation serves any more: waiting requests end ``not_ready`` now, not after a restart."""
        if self.pool.serving() is None and self.draining_since is None:
            self.dispatcher.cancel_queued(ErrorCode.NOT_READY, "the forker generation serving this queue is gone")

    def _adopt(self, ready: Ready) -> None:
        """A generation read Airflow's config: its ``[zygote]`` limits, roots and fingerprint apply now."""
        if not ready.config:
            return
        settings, roots, fingerprint = adopt_config(
            self.settings, tuple(self.dispatcher.roots), self.fingerprint, ready.config
        )
        self.settings = self.dispatcher.settings = settings
        self.dispatcher.roots = roots
        self.fingerprint = fingerprint
        log.info(
            "gateway.config_adopted", generation=ready.generation, roots=list(roots), max_workers=settings.max_workers
        )

    def _read_router(self) -> None:
        self.sessions.read_disconnects()
        for _ in range(1000):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                self._on_client_frames(frames)
            except Exception:
                log.exception("gateway.internal_error", target="client_message")

    def _on_client_frames(self, parts: list[zmq.Frame]) -> None:
        client = parts[0].bytes
        frames = [part.bytes for part in parts]
        if len(frames) != 2:
            self.sessions.send(
                client, Error(id="", code=ErrorCode.MALFORMED.value, message="expected exactly one frame")
            )
            return
        try:
            message = decode(frames[1])
        except ProtocolError as exc:
            log.warning("client.bad_message", code=exc.code.value, error=exc.message)
            self.sessions.send(client, Error(id="", code=exc.code.value, message=exc.message))
            return
        if isinstance(message, Hello):
            self.sessions.hello(client, message, self._handshake(), self.load(), int(parts[1].get(zmq.SRCFD)))
            return
        session = self.sessions.touch(client)
        if session is None:
            self.sessions.send(client, Error(id="", code=ErrorCode.HELLO_REQUIRED.value, message="send hello first"))
            return
        self._on_client_message(client, session, message)

    def _handshake(self) -> Handshake:
        return Handshake(
            self.instance, self.versions, self.fingerprint, self.settings.heartbeat_interval, CREDIT_WINDOW
        )

    def _on_client_message(self, client: bytes, session: Session, message: Message) -> None:
        if isinstance(message, Spawn):
            self._spawn(client, session, message)
        elif isinstance(message, (Input, Credit, Signal)):
            self.dispatcher.request_message(client, message)
        elif isinstance(message, StatusRequest):
            self._status(client, message.id)
        elif isinstance(message, Reload):
            self.pool.reload((client, message.id))
        elif not isinstance(message, Heartbeat):
            text = f"{message.TYPE} is not for the gateway"
            self.sessions.send(client, Error(id="", code=ErrorCode.UNKNOWN_TYPE.value, message=text))

    def _spawn(self, client: bytes, session: Session, spawn: Spawn) -> None:
        if session.role != "client":
            text = f"a {session.role} session may not spawn"
            self.sessions.send(client, Error(id=spawn.id, code=ErrorCode.UNAUTHORIZED.value, message=text))
            return
        self.dispatcher.spawn(client, spawn, session.process, self.draining_since is not None)

    def _client_gone(self, client: bytes, session: Session, why: str) -> None:
        count = self.dispatcher.client_gone(client)
        if count or session.role == "client":
            log.warning("client.gone", client=session.name, reason=why, requests=count)

    def load(self) -> dict[str, Any]:
        return self.dispatcher.load(self.draining_since is not None)

    def _status(self, client: bytes, request_id: str) -> None:
        forker = self.pool.serving()
        if forker is None or len(self.status_waits) >= MAX_STATUS_WAITS:
            self._reply_status(client, request_id, None)
            return
        internal = self.status_waits.add(client, request_id, time.monotonic() + STATUS_WAIT_S)
        forker.send(StatusRequest(id=internal))

    def _sample_forker(self, now: float) -> None:
        """Ask the serving forker for the figures ``load.gauges`` carries (RSS, preload states, pool)."""
        forker = self.pool.serving()
        if forker is not None and self.book.forker_sample.due(now):
            forker.send(StatusRequest(id=self.book.forker_sample.asked(now)))

    def _reply_status(self, client: bytes, request_id: str, forker_status: dict[str, Any] | None) -> None:
        status = self.book.assemble(self.snapshot(), forker_status)
        self.sessions.send(client, StatusReply(id=request_id, status=status))

    def snapshot(self) -> GatewaySnapshot:
        current = self.pool.current
        requests = self.dispatcher.requests
        return GatewaySnapshot(
            versions=self.versions,
            gateway={
                "pid": os.getpid(),
                "endpoint": self.settings.socket,
                "clients": len(self.sessions),
                "uptime_s": round(time.monotonic() - self.started_at, 3),
                "draining": self.draining_since is not None,
            },
            serving=self.pool.serving() is not None and self.draining_since is None,
            current=None if current is None else {"pid": current.pid, "state": current.state.value},
            generation=self.pool.generation,
            generations=[
                {"generation": f.generation, "pid": f.pid, "state": f.state.value} for f in self.pool.forkers.values()
            ],
            workers={"running": requests.running, "queued": requests.waiting, "max": self.settings.max_workers},
        )
