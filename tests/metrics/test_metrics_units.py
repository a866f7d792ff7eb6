"""ZygoteMetrics through Airflow's real ``Stats`` (configured from ``[metrics]``) to a real UDP socket."""

from __future__ import annotations

import pytest
from statsd_listener import StatsdListener, start_airflow_stats

from zygote.client.metrics import ZygoteMetrics

pytestmark = pytest.mark.timeout(60)

Z = "airflow.dag_processing.zygote."


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _by_name(listener: StatsdListener, count: int) -> dict[str, tuple[float, str]]:
    listener.wait_for(lambda lines: len(lines) >= count, 10, f"{count} lines")
    listener.drain(0.2)
    return {line.name: (line.value, line.type) for line in listener.lines}


def test_a_finished_parse_sends_outcome_timers_and_memory(listener: StatsdListener) -> None:
    start_airflow_stats()
    stats_map = {"dispatch_ms": 12.5, "fork_ms": 4.0, "wall_s": 0.25, "peak_uss": 20_000_000, "peak_pss": 30_000_000}
    ZygoteMetrics(legacy_names=True).parse_finished("exited", stats_map)
    got = _by_name(listener, 7)
    assert got == {
        Z + "parses": (1, "c"),
        Z + "parses.exited": (1, "c"),
        Z + "dispatch": (12.5, "ms"),
        Z + "fork": (4.0, "ms"),
        Z + "worker.wall": (250.0, "ms"),
        Z + "worker.peak_uss": (20_000_000, "g"),
        Z + "worker.peak_pss": (30_000_000, "g"),
    }


def test_missing_or_non_numeric_stats_send_nothing_but_the_outcome(listener: StatsdListener) -> None:
    start_airflow_stats()
    ZygoteMetrics(legacy_names=True).parse_finished("zygote_unavailable", {"fork_ms": True, "wall_s": "x"})
    assert set(_by_name(listener, 2)) == {Z + "parses", Z + "parses.zygote_unavailable"}


def test_legacy_names_off_sends_only_modern_names(listener: StatsdListener) -> None:
    start_airflow_stats()
    ZygoteMetrics(legacy_names=False).parse_finished("failed", {})
    ZygoteMetrics(legacy_names=False).session_refused("config_mismatch")
    assert set(_by_name(listener, 2)) == {Z + "parses", Z + "sessions.refused"}


def test_legacy_names_follow_airflow_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__METRICS__LEGACY_NAMES_ON", "False")
    assert ZygoteMetrics.from_airflow_config().legacy_names is False
    monkeypatch.setenv("AIRFLOW__METRICS__LEGACY_NAMES_ON", "True")
    assert ZygoteMetrics.from_airflow_config().legacy_names is True


def test_fallback_period_opens_once_and_closes_on_the_next_remote_start(listener: StatsdListener) -> None:
    start_airflow_stats()
    clock = FakeClock()
    metrics = ZygoteMetrics(legacy_names=True, clock=clock)
    metrics.parse_bypassed("zygote_unavailable", "local")
    metrics.parse_bypassed("overloaded", "local")
    clock.now += 2.5
    metrics.parse_started()
    metrics.parse_started()
    listener.wait_for(lambda lines: any(x.name == Z + "fallback.duration" for x in lines), 10, "fallback end")
    listener.drain(0.3)
    assert len(listener.named(Z + "bypassed")) == 2
    assert len(listener.named(Z + "bypassed.local.zygote_unavailable")) == 1
    assert len(listener.named(Z + "bypassed.local.overloaded")) == 1
    assert len(listener.named(Z + "fallback.started.zygote_unavailable")) == 1
    assert len(listener.named(Z + "fallback.ended.zygote_unavailable")) == 1
    assert [x.value for x in listener.named(Z + "fallback.duration.zygote_unavailable")] == [2500.0]
    assert [x.value for x in listener.named(Z + "fallback.active")] == [1, 0]


def test_session_events(listener: StatsdListener) -> None:
    start_airflow_stats()
    metrics = ZygoteMetrics(legacy_names=True)
    metrics.session_connected()
    metrics.session_refused("version_mismatch")
    assert set(_by_name(listener, 3)) == {
        Z + "sessions.connected",
        Z + "sessions.refused",
        Z + "sessions.refused.version_mismatch",
    }


def test_load_becomes_gauges_with_maps_as_tags(listener: StatsdListener) -> None:
    start_airflow_stats()
    load = {
        "ready": True,
        "free": 5,
        "running": 2,
        "queued": 1,
        "max_workers": 8,
        "max_queued": 4,
        "generation": 3,
        "gauges": {
            "pooled": 2,
            "frozen_objects": 123456,
            "forker_rss": 150_000_000,
            "preload": {"loaded": 4, "rejected": 1},
            "refused": {"overloaded": 7},
            "unknown_key": 9,
        },
    }
    ZygoteMetrics(legacy_names=True).load_received(load)
    got = _by_name(listener, 15)
    assert {name: value for name, (value, kind) in got.items() if kind == "g"} == {
        Z + "ready": 1,
        Z + "workers.free": 5,
        Z + "workers.running": 2,
        Z + "workers.queued": 1,
        Z + "workers.max": 8,
        Z + "forker.generation": 3,
        Z + "workers.pooled": 2,
        Z + "forker.frozen_objects": 123456,
        Z + "forker.rss": 150_000_000,
        Z + "preload.modules": 1,
        Z + "preload.modules.loaded": 4,
        Z + "preload.modules.rejected": 1,
        Z + "refusals": 7,
        Z + "refusals.overloaded": 7,
    }


def test_a_load_without_gauges_sends_what_it_has(listener: StatsdListener) -> None:
    start_airflow_stats()
    ZygoteMetrics(legacy_names=True).load_received({"ready": False, "generation": 0})
    assert _by_name(listener, 2) == {Z + "ready": (0, "g"), Z + "forker.generation": (0, "g")}


def test_allow_list_is_applied_by_airflow(listener: StatsdListener, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__METRICS__METRICS_ALLOW_LIST", "zygote.parses")
    start_airflow_stats()
    metrics = ZygoteMetrics(legacy_names=True)
    metrics.session_connected()
    metrics.parse_finished("exited", {"fork_ms": 3.0})
    assert set(_by_name(listener, 2)) == {Z + "parses", Z + "parses.exited"}


def test_block_list_is_applied_by_airflow(listener: StatsdListener, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__METRICS__METRICS_BLOCK_LIST", "^dag_processing.zygote.parses")
    start_airflow_stats()
    metrics = ZygoteMetrics(legacy_names=True)
    metrics.parse_finished("exited", {"fork_ms": 3.0})
    metrics.session_connected()
    assert set(_by_name(listener, 2)) == {Z + "fork", Z + "sessions.connected"}


def test_tags_reach_a_tag_aware_backend(listener: StatsdListener, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``statsd_influxdb_enabled`` Airflow appends the tags to the name: they travel with the call."""
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED", "True")
    start_airflow_stats()
    ZygoteMetrics(legacy_names=False).parse_bypassed("not_ready", "fail")
    listener.wait_for(lambda lines: len(lines) >= 3, 10, "three lines")
    assert Z + "bypassed,mode=fail,reason=not_ready" in listener.names()
    assert Z + "fallback.started,reason=not_ready" in listener.names()


def test_tag_values_are_made_safe_for_names(listener: StatsdListener) -> None:
    start_airflow_stats()
    ZygoteMetrics(legacy_names=True).load_received({"gauges": {"refused": {"odd code/with.dots": 1}}})
    assert set(_by_name(listener, 2)) == {Z + "refusals", Z + "refusals.odd_code_with__dots"}
