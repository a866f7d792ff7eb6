"""What ``airflow zygote status`` reports: the gateway's counters plus the forker's own view.

The gateway hands :meth:`StatusBook.assemble` a :class:`GatewaySnapshot` (plain values taken at
that moment), so this module never reaches into the gateway itself.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocol import Exited
from zygote.gateway.samples import Samples

StatusCallback = Callable[[bytes, str, "dict[str, Any] | None"], None]

RECENT_WINDOW_S = 300.0
RECENT_MAX = 4096
"""Outcomes remembered for the recent window (counters cover all time)."""
REFUSALS = frozenset(
    {"rejected_path", "fork_refused", "fork_failed", "not_ready", "overloaded", "forker_lost", "internal"}
)
"""Error codes that mean the zygote did not parse a file it was asked to (the client fell back or failed)."""
NOT_SPAWNS = frozenset({"client_gone", "shutting_down"})
PRELOAD_STATES = ("loaded", "pending", "probing", "verified", "rejected", "not_seen")
"""The forker's preload states (``zygote.forker.preload.ModuleState``; the gateway never imports the forker).
Every state is reported, zeros included, so a gauge that drops to 0 says so instead of keeping its last value."""
FORKER_SAMPLE_S = 5.0
"""How often the gateway asks the serving forker for its status to refresh ``load.gauges`` (RSS,
preload states, pooled workers): one ``smaps_rollup`` read in the forker, between forks."""
UNHEALTHY_SHARE = 0.9
UNHEALTHY_MIN = 5
"""Refused at least this share of at least this many recent spawns: up, but not doing its job."""


@dataclass(frozen=True)
class GatewaySnapshot:
    """The gateway's state at one moment, as status needs it."""

    versions: dict[str, Any]
    gateway: dict[str, Any]
    serving: bool
    """A generation is READY and the gateway is not draining."""
    current: dict[str, Any] | None
    """``pid``/``generation``/``state`` of the generation spawns go to, if any."""
    generation: int
    generations: list[dict[str, Any]] = field(default_factory=list)
    workers: dict[str, Any] = field(default_factory=dict)


class StatusBook:
    """Request outcomes and timing samples across forker generations."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.outcomes: dict[str, int] = {}
        self.recent: deque[tuple[float, str]] = deque(maxlen=RECENT_MAX)
        self.fork_ms = Samples()
        self.parse_s = Samples()
        self.peak_uss = Samples()
        self.peak_pss = Samples()
        self.forker_sample = ForkerSample()

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if outcome not in NOT_SPAWNS:
            self.recent.append((self.clock(), outcome))

    def recent_summary(self) -> dict[str, Any]:
        """Spawns ended within the window, and the refusals among them by code."""
        since = self.clock() - RECENT_WINDOW_S
        outcomes = [outcome for at, outcome in self.recent if at >= since]
        refused = Counter(outcome for outcome in outcomes if outcome in REFUSALS)
        return {"window_s": RECENT_WINDOW_S, "spawns": len(outcomes), "refused": dict(refused)}

    def finished(self, exited: Exited) -> None:
        self.count(exited.outcome)
        stats = exited.stats
        if "wall_s" in stats:
            self.parse_s.add(float(stats["wall_s"]))
        if "peak_uss" in stats:  # not measured for a worker answered without its forker
            self.peak_uss.add(float(stats["peak_uss"]))
            self.peak_pss.add(float(stats.get("peak_pss", 0)))

    def assemble(self, snapshot: GatewaySnapshot, forker_status: dict[str, Any] | None) -> dict[str, Any]:
        part = forker_status or {}
        if forker_status is not None:
            self.forker_sample.record(forker_status)
        forker = part.get("forker") or _forker_placeholder(snapshot)
        recent = self.recent_summary()
        reason = _unhealthy_reason(snapshot, forker_status, forker, recent)
        return {
            "healthy": not reason,
            "reason": reason,
            "recent": recent,
            "versions": snapshot.versions,
            "gateway": snapshot.gateway,
            "forker": forker,
            "generations": snapshot.generations,
            "preload": part.get("preload", {}),
            "import_costs": part.get("import_costs", {}),
            "workers": {**snapshot.workers, "pooled": _int(forker.get("pooled"))},
            "requests": dict(self.outcomes),
            "fork_ms": self.fork_ms.summary(),
            "parse_s": self.parse_s.summary(),
            "worker_peak_uss": self.peak_uss.summary(),
            "worker_peak_pss": self.peak_pss.summary(),
        }


def _unhealthy_reason(
    snapshot: GatewaySnapshot, forker_status: dict[str, Any] | None, forker: dict[str, Any], recent: dict[str, Any]
) -> str:
    """Why the zygote is not healthy, or "" when it is."""
    if not snapshot.serving:
        return "no forker generation is serving" if not snapshot.gateway.get("draining") else "draining"
    if forker_status is None:
        return "the forker did not answer"
    if forker.get("threads") != 1:
        return f"the forker has {forker.get('threads')} threads"
    refused = sum(recent["refused"].values())
    if recent["spawns"] >= UNHEALTHY_MIN and refused >= UNHEALTHY_SHARE * recent["spawns"]:
        return f"{refused} of the last {recent['spawns']} spawns were refused: {recent['refused']}"
    return ""


class ForkerSample:
    """The serving forker's last status, asked for every ``FORKER_SAMPLE_S``, for ``load.gauges``.

    A sample belongs to one generation: after a reload the gauges wait for the new forker's own
    figures rather than show the old one's. Any status answer refreshes it, a user's too.
    """

    SAMPLE_ID = "gauges"
    """The id the gateway asks with; user status requests use ``s<n>`` (``StatusWaits``)."""

    def __init__(self) -> None:
        self.generation = 0
        self.status: dict[str, Any] = {}
        self.asked_at: float | None = None

    def due(self, now: float) -> bool:
        return self.asked_at is None or now - self.asked_at >= FORKER_SAMPLE_S

    def asked(self, now: float) -> str:
        self.asked_at = now
        return self.SAMPLE_ID

    def record(self, status: dict[str, Any]) -> None:
        forker = status.get("forker") or {}
        if isinstance(forker.get("generation"), int):
            self.generation = forker["generation"]
            self.status = status

    def gauges(self, generation: int) -> dict[str, Any]:
        """``pooled``, ``forker_rss`` and ``preload`` (state -> count) of ``generation``'s forker.

        ``pooled`` is 0 until the forker reports a warm pool (its status' ``forker.pooled``).
        """
        if generation != self.generation or not self.status:
            return {"pooled": 0}
        forker = self.status.get("forker") or {}
        preload = self.status.get("preload") or {}
        states = Counter(entry.get("state") for entry in preload.values() if isinstance(entry, dict))
        return {
            "pooled": _int(forker.get("pooled")),
            "forker_rss": _int(forker.get("rss")),
            "preload": {state: states.get(state, 0) for state in PRELOAD_STATES},
        }


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class StatusWaits:
    """Status requests waiting for the forker's part, each with a deadline."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[bytes, str, float]] = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, client: bytes, request_id: str, deadline: float) -> str:
        """The id to ask the forker with."""
        internal = f"s{next(self._ids)}"
        self._waiting[internal] = (client, request_id, deadline)
        return internal

    def answered(self, internal: str, status: dict[str, Any], reply: StatusCallback) -> None:
        waiting = self._waiting.pop(internal, None)
        if waiting is not None:
            reply(waiting[0], waiting[1], status)

    def expire(self, now: float, reply: StatusCallback) -> None:
        for internal, (client, request_id, deadline) in list(self._waiting.items()):
            if now >= deadline:
                del self._waiting[internal]
                reply(client, request_id, None)

    def next_deadline(self) -> float | None:
        return min((deadline for _, _, deadline in self._waiting.values()), default=None)


def _forker_placeholder(snapshot: GatewaySnapshot) -> dict[str, Any]:
    current = snapshot.current or {}
    return {
        "pid": current.get("pid"),
        "generation": snapshot.generation,
        "threads": None,
        "frozen_objects": None,
        "state": current.get("state", "down"),
    }
