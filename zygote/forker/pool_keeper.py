"""The forker's side of the warm pool: forking pool workers, handing requests to them, killing idle ones.

The loop calls :meth:`PoolKeeper.refill` on turns with nothing else to do, :meth:`PoolKeeper.take`
for each spawn (which also re-specialises the pool when the spawn's session process differs from
the one its workers adopted), and :meth:`PoolKeeper.close` / :meth:`PoolKeeper.heap_changed` when the idle
workers must go; :class:`~zygote.forker.pool.WarmPool` keeps the books. Killed pool workers are
reaped by the loop like any child and reported back through :meth:`PoolKeeper.reaped`.
"""

from __future__ import annotations

import errno
from typing import Any

from protocol import Spawn
from zygote import linux
from zygote.forker.children import ForkRefused, fork_child
from zygote.forker.measure import ModuleBaseline
from zygote.forker.pool import PooledWorker, WarmPool, assign, process_digest
from zygote.forker.worker import ChannelPairs, WorkerLimits, specialised_body, unspecialised_body
from zygote.logs import get_logger

log = get_logger(__name__)

RETRY_S = 1.0
"""After the kernel refused a pool fork, the pool waits this long before trying again."""


class PoolKeeper:
    """One forker generation's warm pool, as the loop drives it."""

    def __init__(self, size: int, limits: WorkerLimits) -> None:
        self.pool = WarmPool(size)
        self.limits = limits
        self.session: Spawn | None = None
        """The latest spawn: its session's process (and cwd) is what pool workers adopt before their assignment."""
        self.next_refill_at = 0.0

    def __len__(self) -> int:
        """Idle workers (what ``status`` and the gateway's gauge call ``pooled``)."""
        return len(self.pool)

    def __contains__(self, pid: object) -> bool:
        return pid in self.pool

    def pids(self) -> list[int]:
        return self.pool.pids()

    def refill_at(self) -> float | None:
        """When the loop should wake to fork a pool worker (None: the pool is full or closed)."""
        return self.next_refill_at if self.pool.wanted() else None

    def refill(self, now: float, baseline_modules: ModuleBaseline) -> None:
        """Fork one pool worker if one is wanted; :class:`ForkRefused` goes up (the loop retires)."""
        if not self.pool.wanted() or now < self.next_refill_at:
            return
        try:
            pairs = ChannelPairs.create()
        except OSError as exc:
            self._fork_failed(now, exc)
            return
        digest, session = self.pool.digest, self.session
        if digest is None or session is None:
            body = unspecialised_body(pairs, self.limits, baseline_modules)
        else:
            body = specialised_body(pairs, session, self.limits, baseline_modules)
        try:
            pid = fork_child(body, pairs.child_fds(), quiet=False)
        except ForkRefused:
            pairs.close_all()
            raise
        except OSError as exc:
            pairs.close_all()
            self._fork_failed(now, exc)
            return
        pairs.close_child_ends()
        self.pool.add(PooledWorker(pid, pairs, self.pool.heap, digest))

    def take(self, spawn: Spawn) -> PooledWorker | None:
        """An idle worker of the current heap and ``spawn``'s session that accepted it; None: fork one.

        A spawn of another session than the pool's re-specialises it (after the take, so the first
        spawn of a generation still finds an unspecialised worker): its idle workers are killed and
        the refills adopt the new session's process.
        """
        digest = self._digest(spawn)
        taken = self._take(digest, spawn)
        self.session = spawn
        if digest != self.pool.digest:
            stale = self.pool.specialise(digest)
            _kill(stale)
            log.info("pool.specialised", evicted=len(stale), specialisations=self.pool.specialisations)
        return taken

    def _digest(self, spawn: Spawn) -> str:
        """``spawn``'s session key; a ``process`` equal to the latest one's (the usual case) is not hashed again."""
        if self.session is not None and self.pool.digest is not None and spawn.process == self.session.process:
            return self.pool.digest
        return process_digest(spawn.process)

    def _take(self, digest: str, spawn: Spawn) -> PooledWorker | None:
        while (pooled := self.pool.take(digest)) is not None:
            if assign(pooled, spawn):
                return pooled
            log.warning("pool.assign_failed", pid=pooled.pid, request_id=spawn.id)
            _kill([pooled])
        return None

    def heap_changed(self) -> None:
        """A promoted preload: every idle worker holds the old heap."""
        _kill(self.pool.heap_changed())

    def close(self) -> None:
        """Drain, retire or gateway gone: kill the idle workers and fork no more."""
        _kill(self.pool.close())

    def reaped(self, pid: int, exit_code: int) -> None:
        lost = self.pool.reaped(pid)
        if lost is not None:  # died idle (killed from outside): nothing was assigned to it
            lost.pairs.close_all()
            log.warning("pool.worker_lost", pid=pid, exit_code=exit_code)

    def status(self) -> dict[str, Any]:
        """The pool's size and what its idle workers cost (exact, read only when status is asked for)."""
        memory = [linux.smaps_memory(pid) for pid in self.pool.pids()]
        return {
            "size": self.pool.size,
            "idle": len(self.pool),
            "specialised": self.pool.specialised(),
            "specialisations": self.pool.specialisations,
            "handed_out": self.pool.handed_out,
            "evicted": self.pool.evicted,
            "pids": self.pool.pids(),
            "uss": sum(m.get("uss", 0) for m in memory),
            "pss": sum(m.get("pss", 0) for m in memory),
        }

    def _fork_failed(self, now: float, exc: OSError) -> None:
        self.next_refill_at = now + RETRY_S
        log.warning("pool.fork_failed", error=errno.errorcode.get(exc.errno or 0, str(exc.errno)))


def _kill(workers: list[PooledWorker]) -> None:
    for worker in workers:
        linux.kill_quietly(worker.pid)
        worker.pairs.close_all()
