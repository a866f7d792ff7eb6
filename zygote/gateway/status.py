"""What ``airflow zygote status`` reports: the gateway's counters plus the forker's own view."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from protocol import Exited
from zygote.gateway.forker_link import ForkerState
from zygote.gateway.samples import Samples

if TYPE_CHECKING:
    from zygote.gateway.loop import Gateway

StatusCallback = Callable[[bytes, str, "dict[str, Any] | None"], None]


class StatusBook:
    """Request outcomes and timing samples across forker generations, and status requests in flight."""

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.fork_ms = Samples()
        self.parse_s = Samples()
        self.peak_uss = Samples()
        self.peak_pss = Samples()
        self._waiting: dict[str, tuple[bytes, str, float]] = {}
        self._ids = itertools.count(1)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def finished(self, exited: Exited) -> None:
        self.count(exited.outcome)
        stats = exited.stats
        if "wall_s" in stats:
            self.parse_s.add(float(stats["wall_s"]))
            self.peak_uss.add(float(stats.get("peak_uss", 0)))
            self.peak_pss.add(float(stats.get("peak_pss", 0)))

    def await_forker(self, client: bytes, request_id: str, deadline: float) -> str:
        internal = f"s{next(self._ids)}"
        self._waiting[internal] = (client, request_id, deadline)
        return internal

    def forker_status(self, internal: str, status: dict[str, Any], reply: StatusCallback) -> None:
        waiting = self._waiting.pop(internal, None)
        if waiting is not None:
            reply(waiting[0], waiting[1], status)

    def expire_status(self, now: float, reply: StatusCallback) -> None:
        for internal, (client, request_id, deadline) in list(self._waiting.items()):
            if now >= deadline:
                del self._waiting[internal]
                reply(client, request_id, None)

    def assemble(self, gateway: Gateway, forker_status: dict[str, Any] | None) -> dict[str, Any]:
        part = forker_status or {}
        forker = part.get("forker") or _forker_placeholder(gateway)
        healthy = (
            forker_status is not None
            and gateway.draining_since is None
            and forker.get("threads") == 1
            and gateway.current is not None
            and gateway.current.state is ForkerState.READY
        )
        return {
            "healthy": healthy,
            "versions": gateway.ours,
            "gateway": {
                "pid": os.getpid(),
                "endpoint": gateway.settings.socket,
                "clients": len(gateway.sessions),
                "uptime_s": round(time.monotonic() - gateway.started_at, 3),
                "draining": gateway.draining_since is not None,
            },
            "forker": forker,
            "generations": [
                {"generation": f.generation, "pid": f.pid, "state": f.state.value} for f in gateway.forkers.values()
            ],
            "preload": part.get("preload", {}),
            "import_costs": part.get("import_costs", {}),
            "workers": {
                "running": gateway._running_workers(),
                "queued": gateway.requests.queued,
                "max": gateway.settings.max_workers,
            },
            "requests": dict(self.outcomes),
            "fork_ms": self.fork_ms.summary(),
            "parse_s": self.parse_s.summary(),
            "worker_peak_uss": self.peak_uss.summary(),
            "worker_peak_pss": self.peak_pss.summary(),
        }


def _forker_placeholder(gateway: Gateway) -> dict[str, Any]:
    current = gateway.current
    return {
        "pid": current.pid if current else None,
        "generation": gateway.generation,
        "threads": None,
        "frozen_objects": None,
        "state": current.state.value if current else "down",
    }
