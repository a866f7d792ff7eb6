"""Per-request relay: bytes between the zygote and each request's local socketpairs.

How this works: the relay thread owns the ``child`` ends of every request's
:class:`LocalChannels` and never blocks on them. Output from the zygote is queued per channel and
written as the manager reads; credit goes back for bytes delivered. The ``requests`` channel is
read only once the worker started, so until then the ``DagFileParseRequest`` the manager wrote
waits in the socketpair, where a local child can still read it. When the gateway says it holds
early input (``welcome.load``), a copy of that frame goes right after ``spawn`` (it waits there for
the worker, saving a round trip after ``started``); once started, the relay drops those bytes from the
socket instead of sending them again.

Ordering rule (what keeps Airflow's supervisor logic exact): every byte of a request is in the
local sockets first, then the exit code is published on its tracker, then the local ends are
closed (EOF). :meth:`Relay.finish` is the one place that does all three.

Every request ends once, through :meth:`Relay.finish` (started: ``exited``, or failed with a line
in the file's log) or :meth:`Relay.refuse` (never started: a local child on the same channels
under ``fallback = local``, or "not now" under ``fail``). Both close its ledger entry.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import zmq

from protocol import MAX_DATA, Credit, Error, ErrorCode, Exited, Input, Message, Output, Signal, Spawn, Started
from zygote.client.channels import LocalChannels
from zygote.client.ledger import Ledger
from zygote.client.metrics import ZygoteMetrics
from zygote.client.notes import FallbackNotes
from zygote.client.tracker import RemoteTracker
from zygote.logs import get_logger

log = get_logger(__name__)

INPUT_CHUNK = MAX_DATA // 2
LocalStarter = Callable[[LocalChannels, Iterable[socket.socket]], int]


@dataclass
class ClientRequest:
    spawn: Spawn
    channels: LocalChannels
    tracker: RemoteTracker
    answer_by: float = 0.0
    """Monotonic deadline for ``started``; past it the request is parsed elsewhere."""
    first_input: bytes = b""
    """The ``DagFileParseRequest`` frame, sent right after ``spawn`` so it waits in the gateway, not here."""
    skip_local: int = 0
    """Bytes of that frame still in the local ``requests`` socket (left there for a local child): dropped once started."""
    sent_at: float = 0.0
    started: bool = False
    pending: dict[str, bytearray] = field(default_factory=dict)
    owed_credit: int = 0
    exited: Exited | None = None
    failure: tuple[str, str] | None = None

    def has_pending(self) -> bool:
        return any(self.pending.values())

    @property
    def ending(self) -> bool:
        return self.exited is not None or self.failure is not None


class Relay:
    """The requests of one client, across sessions; relay thread only."""

    def __init__(
        self,
        ledger: Ledger,
        send: Callable[[Message], bool],
        notes: FallbackNotes,
        fallback: str,
        start_local: LocalStarter,
        metrics: ZygoteMetrics | None = None,
    ) -> None:
        self.ledger = ledger
        self.metrics = metrics or ZygoteMetrics.from_airflow_config()
        self.send = send
        self.notes = notes
        self.fallback = fallback
        self.start_local = start_local
        self.credit_window = 4 * 1024 * 1024
        self.requests: dict[str, ClientRequest] = {}
        self.abandoned: set[str] = set()
        """Ids given up on before ``started``: killed if they start, their output credited."""

    def add(self, request: ClientRequest, now: float, *, ready: bool, early_input: bool = False) -> None:
        """Send the spawn, then the first frame if the gateway holds early input (an older one drops it)."""
        self.ledger.open(request.spawn.id, request.spawn.path)
        self.requests[request.spawn.id] = request
        request.sent_at = now
        if not ready or not self.send(request.spawn):
            self.refuse(request, "zygote_unavailable", "the session dropped before the request went out")
            return
        view = memoryview(request.first_input if early_input else b"")
        while request.skip_local < len(view):  # what did not go out is read from the socket once started
            chunk = bytes(view[request.skip_local : request.skip_local + INPUT_CHUNK])
            if not self.send(Input(id=request.spawn.id, data=chunk)):
                break
            request.skip_local += len(chunk)

    def register(self, poller: zmq.Poller) -> dict[int, tuple[ClientRequest, str]]:
        handlers: dict[int, tuple[ClientRequest, str]] = {}
        for request in self.requests.values():
            for name, sock in request.channels.child.items():
                flags = zmq.POLLIN if name == "requests" and request.started else 0
                if request.pending.get(name):
                    flags |= zmq.POLLOUT
                if flags:
                    poller.register(sock.fileno(), flags)
                    handlers[sock.fileno()] = (request, name)
        return handlers

    def on_local_event(self, request: ClientRequest, name: str, mask: int) -> None:
        if mask & zmq.POLLOUT:
            self.flush(request, name)
        if mask & zmq.POLLIN:
            self.read_local(request)

    def on_message(self, message: Message) -> None:
        if isinstance(message, Started):
            self.on_started(message)
        elif isinstance(message, Output):
            self.on_output(message)
        elif isinstance(message, Exited):
            self.on_exited(message)
        elif isinstance(message, Error):
            self.on_error(message)

    def on_started(self, started: Started) -> None:
        request = self.requests.get(started.id)
        if request is None:
            if started.id in self.abandoned:
                self.send(Signal(id=started.id, signum=signal.SIGKILL))
            return
        request.started = True
        request.tracker.set_remote_pid(started.pid)
        self.metrics.parse_started()

    def on_output(self, output: Output) -> None:
        request = self.requests.get(output.id)
        if request is None:
            if output.id in self.abandoned:
                self.send(Credit(id=output.id, size=len(output.data)))
            return
        if output.channel == "crash":
            _write_all(2, output.data)
            request.owed_credit += len(output.data)
            return
        if output.channel not in request.channels.child:
            request.owed_credit += len(output.data)
            return
        request.pending.setdefault(output.channel, bytearray()).extend(output.data)
        self.flush(request, output.channel)

    def on_exited(self, exited: Exited) -> None:
        self.abandoned.discard(exited.id)
        request = self.requests.get(exited.id)
        if request is None:
            return
        request.exited = exited
        if exited.note:
            note = exited.note.strip()
            self._queue_line(request, note if note.startswith("[airflow-zygote]") else f"[airflow-zygote] {note}")
        self.finish(request)

    def on_error(self, error: Error) -> None:
        if error.code in (ErrorCode.DUPLICATE_ID.value, ErrorCode.UNKNOWN_ID.value):
            if error.id in self.requests:  # else: early input that crossed the request's refusal
                log.warning("zygote.request_error", request_id=error.id, code=error.code, error=error.message)
            return
        self.abandoned.discard(error.id)
        request = self.requests.get(error.id)
        if request is None:
            return
        if request.started:
            self.fail(request, error.code, error.message)
        else:
            self.refuse(request, error.code, error.message)

    def refuse(self, request: ClientRequest, outcome: str, detail: str, *, allow_local: bool = True) -> None:
        """Never started: parse it locally on the same channels (``local``) or end it "not now"."""
        request_id = request.spawn.id
        self.requests.pop(request_id, None)
        self.ledger.close(request_id, outcome, detail=detail)
        fallback = self.fallback if allow_local else "fail"
        self.metrics.parse_bypassed(outcome, fallback)
        if allow_local and self.notes.first(outcome):
            log.warning("zygote.unavailable", reason=f"{outcome}: {detail}", fallback=fallback, late=True)
        if fallback == "local":
            others = [sock for other in self.requests.values() for sock in other.channels.child.values()]
            try:
                if request.tracker.go_local(lambda: self.start_local(request.channels, others)):
                    return
            except OSError as exc:
                detail = f"{detail}; and a local parse child could not start: {exc}"
        signalled = request.tracker.signalled
        if signalled is not None:
            request.tracker.publish_exit(-signalled)
        else:
            self._send_now(request, f"[airflow-zygote] parse not started: {outcome}: {detail}; retried later")
            request.tracker.publish_not_started()
        request.channels.close_children()

    def fail(self, request: ClientRequest, outcome: str, detail: str) -> None:
        """A started request that gets no ``exited``: say so in the file's log, then end it."""
        if request.ending:
            return
        request.failure = (outcome, detail)
        self._queue_line(request, f"[airflow-zygote] parse ended without a result: {outcome}: {detail}")
        self.finish(request)

    def lose_all(self, why: str) -> None:
        """The session ended: unstarted requests go elsewhere, started ones failed."""
        self.abandoned.clear()
        for request in list(self.requests.values()):
            if request.started:
                self.fail(request, "zygote_unavailable", why)
            else:
                self.refuse(request, "zygote_unavailable", why)

    def expire(self, now: float) -> int:
        """Requests the zygote has not started within ``spawn_timeout`` are parsed elsewhere."""
        expired = [r for r in self.requests.values() if not r.started and now > r.answer_by]
        for request in expired:
            self.abandoned.add(request.spawn.id)
            self.send(Signal(id=request.spawn.id, signum=signal.SIGKILL))
            self.refuse(request, "zygote_unavailable", "the zygote did not start the parse in time")
        return len(expired)

    def flush(self, request: ClientRequest, name: str) -> None:
        pending = request.pending.get(name)
        sock = request.channels.child.get(name)
        while pending and sock is not None:
            try:
                sent = sock.send(pending)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                request.owed_credit += len(pending)
                pending.clear()
                break
            del pending[:sent]
            request.owed_credit += sent
        if request.owed_credit >= self.credit_window // 2:
            self.send_credit(request)
        self.finish(request)

    def read_local(self, request: ClientRequest) -> None:
        sock = request.channels.child.get("requests")
        if sock is None:
            return
        try:
            data = sock.recv(INPUT_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        skipped = min(request.skip_local, len(data))
        request.skip_local -= skipped
        data = data[skipped:]
        if data and request.exited is None:
            self.send(Input(id=request.spawn.id, data=data))

    def send_credit(self, request: ClientRequest) -> None:
        if request.owed_credit > 0 and not request.ending:
            self.send(Credit(id=request.spawn.id, size=request.owed_credit))
            request.owed_credit = 0

    def send_credits(self) -> None:
        for request in list(self.requests.values()):
            self.send_credit(request)

    def finish(self, request: ClientRequest, force: bool = False) -> None:
        """The ordering rule: bytes local, then the exit code, then EOF on the local ends."""
        if not request.ending or (request.has_pending() and not force):
            return
        if self.requests.pop(request.spawn.id, None) is None:
            return
        if request.exited is not None:
            exit_code, outcome, detail = request.exited.exit_code, request.exited.outcome, request.exited.note
            stats = dict(request.exited.stats)
        else:
            assert request.failure is not None
            exit_code, stats = 1, {}
            outcome, detail = request.failure
        start = stats.get("start_monotonic")
        if isinstance(start, float):
            stats["dispatch_ms"] = (start - request.sent_at) * 1000
        self.ledger.close(request.spawn.id, outcome, exit_code=exit_code, detail=detail, stats=stats)
        self.metrics.parse_finished(outcome, stats)
        if request.failure is not None:
            request.tracker.publish_lost()
        else:
            request.tracker.publish_exit(exit_code)
        request.channels.close_children()

    def shutdown(self) -> None:
        """The dag-processor is ending: kill remote workers, end every request now."""
        for request in list(self.requests.values()):
            self.send(Signal(id=request.spawn.id, signum=signal.SIGKILL))
            if request.started:
                self.fail(request, "zygote_unavailable", "the dag-processor is shutting down")
                self.finish(request, force=True)
            else:
                self.refuse(request, "zygote_unavailable", "the dag-processor is shutting down", allow_local=False)

    def _queue_line(self, request: ClientRequest, line: str) -> None:
        request.pending.setdefault("stderr", bytearray()).extend(f"{line}\n".encode())
        self.flush(request, "stderr")

    @staticmethod
    def _send_now(request: ClientRequest, line: str) -> None:
        """A short line into an empty stderr channel (nothing else ever wrote to it)."""
        sock = request.channels.child.get("stderr")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.send(f"{line}\n".encode())


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except (InterruptedError, BlockingIOError):
            continue
        except OSError:
            return
        view = view[written:]
