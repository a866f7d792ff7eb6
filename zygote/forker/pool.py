"""The warm pool: pre-forked workers that wait for an assignment (Android's unspecialized app process pool).

How this works: with ``[zygote] warm_workers`` N, the forker keeps N workers that were forked
ahead of any request. Each went through :func:`~zygote.forker.children.fork_child`'s prologue (own
process group, parent-death signal, fds closed) and has its channel socketpairs. A pool worker is
forked for the session ``process`` (environment and ``sys.path``, SPEC.md 4a) that the latest spawn
carried, keyed by :func:`process_digest`: it adopts that process and runs Airflow's child set-up
(``_fork_main``) at once, then its target blocks reading its report socket
(:func:`~zygote.forker.worker.specialised_body`). A spawn takes the oldest idle worker of its own
digest and writes the request to it; the worker applies what the request decides (limits, cwd,
path) and runs Airflow's parse entrypoint, so no DAG code and nothing request-dependent ran before
the assignment. One digest at a time: a spawn of another digest forks, and the idle workers of the
old one are evicted and replaced. Before any spawn the pool holds unspecialised workers
(:func:`~zygote.forker.worker.unspecialised_body`, the whole set-up after the assignment): the
first spawn takes one, and the others are evicted and replaced by workers of its session. The loop refills the pool on turns with nothing else to do, so the
fork is off the request's path.

An idle worker holds a copy of the forker's heap as it was when forked. Every heap change (a
promoted preload) bumps :attr:`WarmPool.heap` and evicts every idle worker, so a stale one is never
handed out; a new generation is a new forker with its own pool. Draining, retiring and losing the
gateway close the pool: its workers are killed and the loop waits for their reaping before it exits.
A worker that reads EOF instead of an assignment exits at once, and the parent-death signal ends
it with its forker: an idle worker is never orphaned.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocol import Spawn, frame
from zygote.forker.worker import ChannelPairs

ASSIGN_TIMEOUT_S = 1.0
"""How long handing a request to an idle worker may block the loop (it is reading: microseconds)."""


@dataclass
class PooledWorker:
    pid: int
    pairs: ChannelPairs
    heap: int
    digest: str | None = None
    """The session process it adopted before its assignment; None: unspecialised (serves any)."""


class WarmPool:
    """Idle pre-forked workers of one forker generation: bookkeeping only, the loop forks and kills."""

    def __init__(self, size: int) -> None:
        self.size = max(0, size)
        self.heap = 0
        self.digest: str | None = None
        """The session process the pool forks workers for: the latest spawn's (None before any)."""
        self.closed = False
        self.handed_out = 0
        self.evicted = 0
        self.specialisations = 0
        self._idle: dict[int, PooledWorker] = {}
        self._dying: set[int] = set()

    def __len__(self) -> int:
        return len(self._idle)

    def __contains__(self, pid: object) -> bool:
        return pid in self._idle or pid in self._dying

    def pids(self) -> list[int]:
        """Every pool process not yet reaped (idle or evicted)."""
        return [*self._idle, *self._dying]

    def specialised(self) -> int:
        """Idle workers set up for the latest spawn's session (the rest are unspecialised)."""
        return sum(1 for w in self._idle.values() if w.digest is not None and w.digest == self.digest)

    def wanted(self) -> bool:
        return not self.closed and len(self._idle) < self.size

    def add(self, worker: PooledWorker) -> None:
        self._idle[worker.pid] = worker

    def take(self, digest: str) -> PooledWorker | None:
        """The oldest idle worker of the current heap that can serve a spawn of session ``digest``.

        That is one set up for it, or an unspecialised one (only before the first spawn, see
        :meth:`specialise`). Call :meth:`specialise` after: the take comes first so the very first
        spawn still finds an unspecialised worker.
        """
        for pid, worker in self._idle.items():
            if worker.heap == self.heap and worker.digest in (digest, None):
                self.handed_out += 1
                return self._idle.pop(pid)
        return None

    def specialise(self, digest: str) -> list[PooledWorker]:
        """Spawns now come from session ``digest``: evict every idle worker not set up for it.

        One session at a time, the latest: the loop kills what this returns and refills for it.
        """
        if digest == self.digest:
            return []
        self.digest = digest
        self.specialisations += 1
        stale = [w for w in self._idle.values() if w.digest != digest]
        for worker in stale:
            del self._idle[worker.pid]
        return self._evicted(stale)

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
        return self._evicted(evicted)

    def _evicted(self, workers: list[PooledWorker]) -> list[PooledWorker]:
        self._dying.update(worker.pid for worker in workers)
        self.evicted += len(workers)
        return workers


def process_digest(process: Mapping[str, Any]) -> str:
    """A stable key of a session's ``process`` (environment and ``sys.path``): equal dicts, equal keys."""
    encoded = json.dumps(process, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def assign(worker: PooledWorker, spawn: Spawn) -> bool:
    """Hand ``spawn`` to an idle worker; False if it could not take it (gone, or not reading)."""
    report = worker.pairs.parent["report"]
    if worker.digest is not None:  # it adopted the session's process already: the request alone
        spawn = dataclasses.replace(spawn, process={})
    try:
        report.settimeout(ASSIGN_TIMEOUT_S)
        report.sendall(frame(spawn))
    except OSError:
        return False
    return True
