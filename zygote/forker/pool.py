"""The warm pool: pre-forked workers that wait for an assignment (Android's unspecialized app process pool).

How this works: with ``[zygote] warm_workers`` N, the forker keeps N workers that were forked
ahead of any request. Each went through :func:`~zygote.forker.children.fork_child`'s prologue (own
process group, parent-death signal, fds closed), has its channel socketpairs and its limits, and
blocks reading its report socket. A spawn takes the oldest idle one and writes the ``spawn``
message to it; the worker then does exactly what a freshly forked worker does with that request
(:func:`~zygote.forker.worker.worker_body`: the session's environment and ``sys.path``, cwd,
Airflow's ``_fork_main`` and parse entrypoint), so no DAG code and nothing request-dependent ran
before the assignment. The loop refills the pool on turns with nothing else to do, so the fork
is off the request's path.

An idle worker holds a copy of the forker's heap as it was when forked. Every heap change (a
promoted preload) bumps :attr:`WarmPool.heap` and evicts every idle worker, so a stale one is never
handed out; a new generation is a new forker with its own pool. Draining, retiring and losing the
gateway close the pool: its workers are killed and the loop waits for their reaping before it exits.
A worker that reads EOF instead of an assignment exits at once, and the parent-death signal ends
it with its forker: an idle worker is never orphaned.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

from protocol import FrameBuffer, ProtocolError, Spawn, frame
from zygote.forker.worker import ChannelPairs, WorkerLimits, worker_body

ASSIGN_TIMEOUT_S = 1.0
"""How long handing a request to an idle worker may block the loop (it is reading: microseconds)."""


@dataclass
class PooledWorker:
    pid: int
    pairs: ChannelPairs
    heap: int


class WarmPool:
    """Idle pre-forked workers of one forker generation: bookkeeping only, the loop forks and kills."""

    def __init__(self, size: int) -> None:
        self.size = max(0, size)
        self.heap = 0
        self.closed = False
        self.handed_out = 0
        self.evicted = 0
        self._idle: dict[int, PooledWorker] = {}
        self._dying: set[int] = set()

    def __len__(self) -> int:
        return len(self._idle)

    def __contains__(self, pid: object) -> bool:
        return pid in self._idle or pid in self._dying

    def pids(self) -> list[int]:
        """Every pool process not yet reaped (idle or evicted)."""
        return [*self._idle, *self._dying]

    def wanted(self) -> bool:
        return not self.closed and len(self._idle) < self.size

    def add(self, worker: PooledWorker) -> None:
        self._idle[worker.pid] = worker

    def take(self) -> PooledWorker | None:
        """The oldest idle worker forked from the current heap, no longer counted as pooled."""
        for pid, worker in self._idle.items():
            if worker.heap == self.heap:
                self.handed_out += 1
                return self._idle.pop(pid)
        return None

    def heap_changed(self) -> list[PooledWorker]:
        """The forker's heap changed: every idle worker is stale; the loop kills what this returns."""
        self.heap += 1
        return self._evict_all()

    def close(self) -> list[PooledWorker]:
        """No more refills (drain, retire, gateway gone); the loop kills what this returns."""
        self.closed = True
        return self._evict_all()

    def reaped(self, pid: int) -> PooledWorker | None:
        """A pool process ended: an evicted one as expected, or an idle one that died (returned)."""
        self._dying.discard(pid)
        return self._idle.pop(pid, None)

    def _evict_all(self) -> list[PooledWorker]:
        evicted = list(self._idle.values())
        self._idle.clear()
        self._dying.update(worker.pid for worker in evicted)
        self.evicted += len(evicted)
        return evicted


def pooled_body(pairs: ChannelPairs, limits: WorkerLimits, baseline_modules: frozenset[str]) -> Callable[[], int]:
    """The body of a pool worker: wait for the request, then be an ordinary worker for it."""

    def body() -> int:
        spawn = await_assignment(pairs.child["report"])
        if spawn is None:  # evicted or the forker is gone: nothing ran, nothing to report
            return 0
        return worker_body(pairs, spawn, limits, baseline_modules)()

    return body


def await_assignment(report: socket.socket) -> Spawn | None:
    """Block until the forker writes one ``spawn`` on the report socket; None at EOF or garbage."""
    buffer = FrameBuffer()
    while True:
        try:
            data = report.recv(1 << 16)
        except InterruptedError:
            continue
        except OSError:
            return None
        if not data:
            return None
        try:
            messages = buffer.feed(data)
        except ProtocolError:
            return None
        if messages:
            first = messages[0]
            return first if isinstance(first, Spawn) else None


def assign(worker: PooledWorker, spawn: Spawn) -> bool:
    """Hand ``spawn`` to an idle worker; False if it could not take it (gone, or not reading)."""
    report = worker.pairs.parent["report"]
    try:
        report.settimeout(ASSIGN_TIMEOUT_S)
        report.sendall(frame(spawn))
    except OSError:
        return False
    return True
