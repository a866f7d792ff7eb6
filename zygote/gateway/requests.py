"""The gateway's view of parse requests: two lifetimes, each ending exactly once.

A request is *replied* when the client got its one terminal message (``exited`` or ``error``);
its *slot* is open while a forker owes us a terminal for it (a worker may still run). Both end
independently (a client can vanish while its worker dies; a forker can die under a request), and
the request is forgotten when both have ended.
"""

from __future__ import annotations

import enum
import itertools
from collections import OrderedDict
from dataclasses import dataclass

from protocol import Exited, Spawn
from zygote.gateway.relay import Relay

RequestKey = tuple[bytes, str]


class RequestState(enum.Enum):
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
    state: RequestState = RequestState.QUEUED
    generation: int = 0
    pid: int = 0
    relay: Relay | None = None
    exited: Exited | None = None
    exited_at: float = 0.0
    replied: bool = False
    slot_open: bool = False

    @property
    def key(self) -> RequestKey:
        return (self.client, self.spawn.id)


class RequestTable:
    """Open requests by client key and by the id the forker knows them by."""

    def __init__(self) -> None:
        self._by_key: dict[RequestKey, Request] = {}
        self._by_internal: dict[str, Request] = {}
        self._queue: OrderedDict[str, Request] = OrderedDict()
        self._ids = itertools.count(1)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def live(self) -> list[Request]:
        """Every request not yet forgotten (replied or not)."""
        return list(self._by_internal.values())

    def __len__(self) -> int:
        return len(self._by_internal)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def accept(self, client: bytes, spawn: Spawn, now: float) -> Request:
        request = Request(client, spawn, f"r{next(self._ids)}", now)
        self._by_key[request.key] = request
        self._by_internal[request.internal_id] = request
        self._queue[request.internal_id] = request
        return request

    def next_queued(self) -> Request | None:
        if not self._queue:
            return None
        _, request = self._queue.popitem(last=False)
        return request

    def unqueue(self, request: Request) -> None:
        self._queue.pop(request.internal_id, None)

    def by_internal(self, internal_id: str) -> Request | None:
        return self._by_internal.get(internal_id)

    def get(self, key: RequestKey) -> Request | None:
        return self._by_key.get(key)

    def mark_replied(self, request: Request) -> bool:
        """True the first time only: the caller sends the terminal reply exactly then."""
        if request.replied:
            return False
        request.replied = True
        self.unqueue(request)
        if self._by_key.get(request.key) is request:
            del self._by_key[request.key]
        self._forget_if_done(request)
        return True

    def close_slot(self, request: Request) -> None:
        request.slot_open = False
        self._forget_if_done(request)

    def _forget_if_done(self, request: Request) -> None:
        if request.replied and not request.slot_open:
            self._by_internal.pop(request.internal_id, None)
            if request.relay is not None:
                request.relay.close_all()
