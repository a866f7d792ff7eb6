"""The gateway's view of parse requests: two lifetimes, each ending exactly once.

A request is *replied* when the client got its one terminal message (``exited`` or ``error``);
its *slot* is open while a forker owes us a terminal for it (a worker may still run). Both end
independently (a client can vanish while its worker dies; a forker can die under a request), and
the request is forgotten when both have ended. Every state change is a method of
:class:`RequestTable`; the gateway only asks for them:

    CHECKING --admit--> QUEUED --dispatch--> DISPATCHED --started--> RUNNING --exited--> EXITED
    (any) --reply--> replied          (DISPATCHED, RUNNING) --close_slot--> slot closed

A RUNNING request whose channels all ended (``channels_ended``) waits only for the forker's
``exited``, which comes within milliseconds; like a spawn not yet started, it is an answer the
forker owes (``owed_since``), and one owed for long means the forker is stopped or starved.
"""

from __future__ import annotations

import enum
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field

from protocol import Exited, Spawn
from zygote.gateway.relay import Relay

RequestKey = tuple[bytes, str]


class RequestState(enum.Enum):
    CHECKING = "checking"
    """Accepted; its path is being checked off the loop."""
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    EXITED = "exited"


@dataclass
class Request:
    client: bytes
    spawn: Spawn
    internal_id: str
    accepted_at: float
    state: RequestState = RequestState.CHECKING
    generation: int = 0
    dispatched_at: float = 0.0
    """When the forker was asked to fork it (monotonic): a forker that never answers is a stalled one."""
    pid: int = 0
    started_at: float = 0.0
    relay: Relay | None = None
    channels_ended_at: float = 0.0
    """When the worker's last channel reached EOF (monotonic; 0 while one is open)."""
    exited: Exited | None = None
    exited_at: float = 0.0
    replied: bool = False
    slot_open: bool = False
    gate_checking: bool = False
    """The first frame passed; its ``bundle_path`` is being checked off the loop."""
    drain_s: float = 0.0
    """Seconds since ``exited`` during which the gateway could read the worker's channels."""
    drain_mark: float = 0.0
    early_input: bytearray = field(default_factory=bytearray)
    """Input that arrived before the worker started (the client sends the first frame with the spawn)."""

    @property
    def key(self) -> RequestKey:
        return (self.client, self.spawn.id)


class RequestTable:
    """Open requests by client key and by the id the forker knows them by."""

    def __init__(self) -> None:
        self._by_key: dict[RequestKey, Request] = {}
        self._by_internal: dict[str, Request] = {}
        self._queue: OrderedDict[str, Request] = OrderedDict()
        self._checking: set[str] = set()
        self._ids = itertools.count(1)
        self.running = 0
        """Requests whose slot is open: a worker runs (or is being forked) for each."""

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __len__(self) -> int:
        return len(self._by_internal)

    def live(self) -> list[Request]:
        """Every request not yet forgotten (replied or not)."""
        return list(self._by_internal.values())

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def waiting(self) -> int:
        """Accepted requests without a worker slot yet: checking their path or queued."""
        return len(self._queue) + len(self._checking)

    def get(self, key: RequestKey) -> Request | None:
        return self._by_key.get(key)

    def by_internal(self, internal_id: str) -> Request | None:
        return self._by_internal.get(internal_id)

    def of_client(self, client: bytes) -> list[Request]:
        return [r for r in self._by_internal.values() if r.client == client]

    def in_generation(self, generation: int) -> list[Request]:
        """Requests a forker of ``generation`` still owes a terminal for."""
        return [r for r in self._by_internal.values() if r.slot_open and r.generation == generation]

    def accept(self, client: bytes, spawn: Spawn, now: float) -> Request:
        request = Request(client, spawn, f"r{next(self._ids)}", now)
        self._by_key[request.key] = request
        self._by_internal[request.internal_id] = request
        self._checking.add(request.internal_id)
        return request

    def admit(self, request: Request) -> None:
        """CHECKING -> QUEUED: its path passed the check."""
        if request.state is RequestState.CHECKING and not request.replied:
            self._checking.discard(request.internal_id)
            request.state = RequestState.QUEUED
            self._queue[request.internal_id] = request

    def next_queued(self) -> Request | None:
        if not self._queue:
            return None
        _, request = self._queue.popitem(last=False)
        return request

    def dispatch(self, request: Request, generation: int, now: float = 0.0) -> None:
        """QUEUED -> DISPATCHED: a forker of ``generation`` now owes a terminal."""
        self._queue.pop(request.internal_id, None)
        request.state = RequestState.DISPATCHED
        request.generation = generation
        request.dispatched_at = now
        request.slot_open = True
        self.running += 1

    def owed_since(self, generation: int) -> list[float]:
        """Since when each answer the forker of ``generation`` owes became due (monotonic).

        Both kinds take a healthy forker milliseconds: a spawn it has not started, and the
        ``exited`` of a worker whose channels all ended. A reply already sent does not matter:
        the forker owes the answer until its slot closes.
        """
        due = []
        for request in self._by_internal.values():
            if not request.slot_open or request.generation != generation:
                continue
            if request.state is RequestState.DISPATCHED:
                due.append(request.dispatched_at)
            elif request.state is RequestState.RUNNING and request.channels_ended_at:
                due.append(request.channels_ended_at)
        return due

    def started(self, internal_id: str, pid: int, relay: Relay, now: float = 0.0) -> Request | None:
        """DISPATCHED -> RUNNING; None (and the relay closed) when nobody waits for it any more."""
        request = self._by_internal.get(internal_id)
        if request is None or request.replied or request.state is not RequestState.DISPATCHED:
            relay.close_all()
            return None
        request.relay = relay
        request.pid = pid
        request.started_at = now
        request.state = RequestState.RUNNING
        return request

    def channels_ended(self, request: Request, now: float) -> None:
        """RUNNING: every channel of its worker reached EOF; only the forker's ``exited`` is missing."""
        if request.state is RequestState.RUNNING and not request.channels_ended_at:
            request.channels_ended_at = now

    def exited(self, internal_id: str, exited: Exited, now: float) -> Request | None:
        """-> EXITED: the worker was reaped; its channels may still hold output."""
        request = self._by_internal.get(internal_id)
        if request is None:
            return None
        request.exited = exited
        request.exited_at = request.drain_mark = now
        request.state = RequestState.EXITED
        self.close_slot(request)
        return request

    def mark_replied(self, request: Request) -> bool:
        """True the first time only: the caller sends the terminal reply exactly then."""
        if request.replied:
            return False
        request.replied = True
        self._queue.pop(request.internal_id, None)
        self._checking.discard(request.internal_id)
        if self._by_key.get(request.key) is request:
            del self._by_key[request.key]
        self._forget_if_done(request)
        return True

    def close_slot(self, request: Request) -> None:
        """The forker owes nothing more for ``request`` (exited, failed, or the forker is gone)."""
        if request.slot_open:
            request.slot_open = False
            self.running -= 1
        self._forget_if_done(request)

    def _forget_if_done(self, request: Request) -> None:
        if request.replied and not request.slot_open:
            self._by_internal.pop(request.internal_id, None)
            if request.relay is not None:
                request.relay.close_all()
