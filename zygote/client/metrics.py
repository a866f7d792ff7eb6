"""The client's events as Airflow metrics, through Airflow's own ``Stats``.

Why through ``Stats``: the dag-processor already configured it from ``[metrics]`` (StatsD,
DogStatsD or OpenTelemetry, prefix, allow/block lists, name handler), so the zygote's metrics reach
the same dashboards with no configuration of their own, and the sidecar opens no port.

Naming follows Airflow 3.3: a modern name whose variables are tags (sent by DogStatsD, OpenTelemetry
and ``statsd_influxdb_enabled``; plain StatsD drops them), plus, while ``[metrics] legacy_names_on``
is true, a legacy name with the tag values spelled into it (``dag_processing.zygote.parses.exited``)
so plain StatsD and its Prometheus exporter still see them. Airflow derives its own legacy names
from a registry it ships; ours are built here the same way (a ``.`` in a value becomes ``__``).

The one piece of state is the fallback period: from the first parse that bypassed the zygote to the
next parse the zygote started; its transitions live in :meth:`ZygoteMetrics.parse_bypassed` and
:meth:`ZygoteMetrics.parse_started`. Methods are called from the manager and relay threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow.configuration import conf
from airflow.observability.stats import Stats, normalize_name_for_stats

PREFIX = "dag_processing.zygote."

TOP_LEVEL_LOAD = {
    "running": "workers.running",
    "queued": "workers.queued",
    "max_workers": "workers.max",
    "free": "workers.free",
    "generation": "forker.generation",
}
"""``load`` key -> metric (gauge), SPEC.md 4b."""

LOAD_GAUGES = {
    "pooled": "workers.pooled",
    "frozen_objects": "forker.frozen_objects",
    "forker_rss": "forker.rss",
}
"""``load.gauges`` key -> metric (gauge); absent keys are skipped."""

LOAD_GAUGE_MAPS = {
    "preload": ("preload.modules", "state"),
    "refused": ("refusals", "code"),
}
"""``load.gauges`` key whose value is a map -> (metric, tag that carries the map's key)."""

PARSE_TIMERS = {
    "dispatch_ms": ("dispatch", 1.0),
    "fork_ms": ("fork", 1.0),
    "wall_s": ("worker.wall", 1000.0),
}
"""``exited.stats`` key -> (timer metric, factor to milliseconds)."""

PARSE_GAUGES = {"peak_uss": "worker.peak_uss", "peak_pss": "worker.peak_pss"}
"""``exited.stats`` key -> gauge metric (bytes, the last finished parse)."""


@dataclass(frozen=True)
class FallbackPeriod:
    reason: str
    started_at: float


class ZygoteMetrics:
    """One method per event the client learns; each becomes one or a few ``Stats`` calls."""

    def __init__(self, *, legacy_names: bool, clock: Any = time.monotonic) -> None:
        self.legacy_names = legacy_names
        self._clock = clock
        self._lock = threading.Lock()
        self._fallback: FallbackPeriod | None = None

    @classmethod
    def from_airflow_config(cls) -> ZygoteMetrics:
        """Legacy names follow ``[metrics] legacy_names_on``, as Airflow's own metrics do."""
        return cls(legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=True))

    def parse_started(self) -> None:
        """The zygote forked a worker: a fallback period, if one is open, ends here."""
        with self._lock:
            period, self._fallback = self._fallback, None
        if period is not None:
            self._count("fallback.ended", reason=period.reason)
            self._timing("fallback.duration", (self._clock() - period.started_at) * 1000.0, reason=period.reason)
            self._gauge("fallback.active", 0)

    def parse_finished(self, outcome: str, stats: Mapping[str, Any]) -> None:
        """A parse the zygote started ended (``exited`` or a client-side failure such as an outage)."""
        self._count("parses", outcome=outcome)
        for key, (metric, to_ms) in PARSE_TIMERS.items():
            value = _number(stats.get(key))
            if value is not None:
                self._timing(metric, value * to_ms)
        for key, metric in PARSE_GAUGES.items():
            value = _number(stats.get(key))
            if value:
                self._gauge(metric, value)

    def parse_bypassed(self, reason: str, mode: str) -> None:
        """A parse the zygote did not take: ``mode`` is ``local`` or ``fail`` (``[zygote] fallback``)."""
        self._count("bypassed", mode=mode, reason=reason)
        with self._lock:
            opening = self._fallback is None
            if opening:
                self._fallback = FallbackPeriod(reason, self._clock())
        if opening:
            self._count("fallback.started", reason=reason)
            self._gauge("fallback.active", 1)

    def session_connected(self) -> None:
        self._count("sessions.connected")

    def session_refused(self, code: str) -> None:
        """The handshake was refused (``version_mismatch``, ``config_mismatch``)."""
        self._count("sessions.refused", code=code)

    def load_received(self, load: Mapping[str, Any]) -> None:
        """``welcome.load`` or a heartbeat's: the zygote-wide gauges."""
        if isinstance(load.get("ready"), bool):
            self._gauge("ready", int(load["ready"]))
        self._gauges(load, TOP_LEVEL_LOAD)
        gauges = load.get("gauges")
        if not isinstance(gauges, Mapping):
            return
        self._gauges(gauges, LOAD_GAUGES)
        for key, (metric, tag) in LOAD_GAUGE_MAPS.items():
            values = gauges.get(key)
            if isinstance(values, Mapping):
                for name, value in values.items():
                    if (number := _number(value)) is not None:
                        self._gauge(metric, number, **{tag: str(name)})

    def _gauges(self, source: Mapping[str, Any], names: Mapping[str, str]) -> None:
        for key, metric in names.items():
            if (value := _number(source.get(key))) is not None:
                self._gauge(metric, value)

    def _count(self, metric: str, **tags: str) -> None:
        for name, tag_map in self._names(metric, tags):
            Stats.incr(name, tags=tag_map)

    def _gauge(self, metric: str, value: float, **tags: str) -> None:
        for name, tag_map in self._names(metric, tags):
            Stats.gauge(name, value, tags=tag_map)

    def _timing(self, metric: str, value_ms: float, **tags: str) -> None:
        for name, tag_map in self._names(metric, tags):
            Stats.timing(name, value_ms, tags=tag_map)

    def _names(self, metric: str, tags: Mapping[str, str]) -> list[tuple[str, dict[str, str] | None]]:
        """The modern name with its tags, and the legacy name when enabled and there are tags."""
        clean = {key: normalize_name_for_stats(value, log_warning=False) for key, value in tags.items()}
        names: list[tuple[str, dict[str, str] | None]] = [(PREFIX + metric, clean or None)]
        if self.legacy_names and clean:
            legacy = ".".join([PREFIX + metric, *(value.replace(".", "__") for value in clean.values())])
            names.append((legacy, None))
        return names


def _number(value: Any) -> int | float | None:
    """Numbers only: a bool or a missing key is not a measurement."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value
