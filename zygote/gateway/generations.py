"""Forker generations: which one serves, and the lifecycle start -> ready -> drain -> gone.

One generation serves at a time (``current``, once READY). A reload (SIGHUP, ``airflow zygote
reload``) or a retirement (the forker can no longer fork safely) starts a new generation; when it
is ready the old one is told to drain and exits once its workers ended. A generation that dies
while serving is replaced after a back-off that doubles up to :data:`MAX_RESTART_BACKOFF_S` and
resets on the next ``ready``. At most one generation is starting at any time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from protocol import Ack, Drain, Error, ErrorCode, Message, Ready
from zygote import linux
from zygote.gateway.forker_link import ForkerLink, ForkerState
from zygote.logs import get_logger

log = get_logger(__name__)

MAX_RESTART_BACKOFF_S = 30.0
MAX_PENDING_RELOADS = 64
"""Reload requests answered when the next generation is ready; beyond, ``overloaded`` at once."""

Requester = tuple[bytes, str]
SendCallback = Callable[[bytes, Message], None]


class ForkerPool:
    """Every forker process the gateway started and has not yet reaped."""

    def __init__(self, verbose: bool, send: SendCallback) -> None:
        self.verbose = verbose
        self.send = send
        self.forkers: dict[int, ForkerLink] = {}
        self.generation = 0
        self.current: ForkerLink | None = None
        self.pending_reloads: list[Requester] = []
        self.restart_at: float | None = None
        self.restart_backoff = 1.0
        self.draining = False

    def __len__(self) -> int:
        return len(self.forkers)

    def serving(self) -> ForkerLink | None:
        """The generation new spawns go to, when it is ready."""
        forker = self.current
        return forker if forker is not None and forker.state is ForkerState.READY else None

    def by_generation(self, generation: int) -> ForkerLink | None:
        return next((f for f in self.forkers.values() if f.generation == generation), None)

    def start(self) -> None:
        self.restart_at = None  # a reload during a pending crash restart starts one generation, not two
        self.generation += 1
        forker = ForkerLink.spawn(self.generation, self.verbose)
        self.forkers[forker.pid] = forker
        log.info("forker.starting", generation=forker.generation, pid=forker.pid)

    def ready(self, forker: ForkerLink, ready: Ready, old_deadline_s: float) -> None:
        """``forker`` serves from now on; the previous generation drains within ``old_deadline_s``."""
        forker.state = ForkerState.DRAINING if self.draining else ForkerState.READY
        forker.frozen = ready.frozen
        self.restart_backoff = 1.0
        log.info("forker.ready", generation=ready.generation, pid=ready.pid, frozen=ready.frozen)
        for old in self.forkers.values():
            if old is not forker and old.state is ForkerState.READY:
                self._drain(old, old_deadline_s)
        self.current = forker
        for client, request_id in self.pending_reloads:
            self.send(client, Ack(id=request_id, detail=f"generation {ready.generation} is serving"))
        self.pending_reloads.clear()

    def reload(self, requester: Requester | None) -> None:
        if requester is not None and len(self.pending_reloads) >= MAX_PENDING_RELOADS:
            text = f"{MAX_PENDING_RELOADS} reloads are already waiting for the next generation"
            self.send(requester[0], Error(id=requester[1], code=ErrorCode.OVERLOADED.value, message=text))
            return
        if requester is not None:
            self.pending_reloads.append(requester)
        if self.draining:
            return
        if not any(f.state is ForkerState.STARTING for f in self.forkers.values()):
            log.info("gateway.reload", generation=self.generation + 1)
            self.start()

    def retire(self, forker: ForkerLink, why: str) -> None:
        """The forker can no longer fork safely: no new work for it, and a new generation at once."""
        log.error("forker.retired", generation=forker.generation, reason=why)
        forker.state = ForkerState.DRAINING
        if self.current is forker:
            self.current = None
        self.reload(None)

    def drain_all(self, deadline_s: float) -> None:
        """Shutting down: every generation finishes its workers and exits."""
        self.draining = True
        for forker in self.forkers.values():
            self._drain(forker, deadline_s)

    def lost(self, forker: ForkerLink) -> None:
        """``forker`` is gone (exited, or its link closed or corrupt): forget it, maybe restart."""
        if forker.state is ForkerState.STARTING and self.current is not None:
            why = f"forker generation {forker.generation} died while starting; generation {self.current.generation} serves"
            for client, request_id in self.pending_reloads:
                self.send(client, Error(id=request_id, code=ErrorCode.INTERNAL.value, message=why))
            self.pending_reloads.clear()
        was_serving = forker.state in (ForkerState.STARTING, ForkerState.READY)
        forker.close()
        self.forkers.pop(forker.pid, None)
        linux.kill_quietly(forker.pid)
        if self.current is forker:
            self.current = None
        if was_serving and not self.draining and self.current is None:
            self.restart_at = time.monotonic() + self.restart_backoff
            self.restart_backoff = min(self.restart_backoff * 2, MAX_RESTART_BACKOFF_S)
            log.error("forker.lost", generation=forker.generation, restart_in_s=self.restart_at - time.monotonic())

    def on_timer(self, now: float) -> None:
        if self.restart_at is not None and now >= self.restart_at and not self.draining:
            self.restart_at = None
            self.start()

    def kill_all(self) -> None:
        for forker in self.forkers.values():
            linux.kill_quietly(forker.pid)

    def _drain(self, forker: ForkerLink, deadline_s: float) -> None:
        forker.send(Drain(deadline_s=deadline_s))
        forker.state = ForkerState.DRAINING
