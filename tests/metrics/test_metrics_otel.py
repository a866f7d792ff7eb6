"""ZygoteMetrics through Airflow's real OpenTelemetry path (``[metrics] otel_on``) to an OTLP/HTTP collector."""

from __future__ import annotations

import atexit
import gc
from collections.abc import Iterator

import pytest
from airflow._shared.observability.metrics import otel_logger
from airflow._shared.observability.metrics.base_stats_logger import NoStatsLogger
from airflow.observability import stats
from otlp_collector import OtlpCollector, OtlpPoint
from statsd_listener import start_airflow_stats

from zygote.client.metrics import ZygoteMetrics
from zygote.forker.quiet_metrics import drop_meter_provider

pytestmark = pytest.mark.timeout(60)

Z = "airflow.dag_processing.zygote."


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpCollector]:
    sink = OtlpCollector()
    monkeypatch.setenv("AIRFLOW__METRICS__OTEL_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__OTEL_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__OTEL_PORT", str(sink.port))
    monkeypatch.setenv("AIRFLOW__METRICS__OTEL_INTERVAL_MILLISECONDS", "200")
    yield sink
    # Unset, not only shut down: a stock parse child that later tests fork from this process would
    # otherwise restart the reader and log "Exporter already shutdown" into its per-file log.
    provider = drop_meter_provider()
    if provider is not None:
        provider.shutdown()
    atexit.unregister(otel_logger.flush_otel_metrics)
    stats.initialize(factory=NoStatsLogger, export_legacy_names=True)
    del provider
    gc.collect()  # the reader's at-fork hook holds it weakly
    sink.close()


def _find(points: list[OtlpPoint], name: str, **attributes: str) -> list[OtlpPoint]:
    wanted = tuple(sorted(attributes.items()))
    return [point for point in points if point.name == name and point.attributes == wanted]


def test_tags_become_otel_attributes_with_the_right_instruments(collector: OtlpCollector) -> None:
    start_airflow_stats()
    zygote = ZygoteMetrics(legacy_names=False)
    zygote.parse_finished("exited", {"fork_ms": 4.0, "wall_s": 0.5, "peak_uss": 20_000_000})
    zygote.parse_bypassed("overloaded", "local")
    zygote.load_received({"ready": True, "running": 2, "gauges": {"preload": {"loaded": 3}}})
    points = collector.wait_for(
        lambda found: bool(_find(found, Z + "preload.modules", state="loaded")) and bool(_find(found, Z + "fork")),
        30,
        "the zygote metrics over OTLP",
    )
    assert collector.paths == {"/v1/metrics"}
    assert _find(points, Z + "parses", outcome="exited")[-1].kind == "sum"
    assert _find(points, Z + "parses", outcome="exited")[-1].value == 1
    assert _find(points, Z + "bypassed", mode="local", reason="overloaded")[-1].value == 1
    assert _find(points, Z + "fallback.started", reason="overloaded")[-1].value == 1
    fork = _find(points, Z + "fork")[-1]
    assert (fork.kind, fork.count, fork.value) == ("exponential_histogram", 1, 4.0)
    assert _find(points, Z + "worker.wall")[-1].value == 500.0
    assert (_find(points, Z + "worker.peak_uss")[-1].kind, _find(points, Z + "worker.peak_uss")[-1].value) == (
        "gauge",
        20_000_000,
    )
    assert _find(points, Z + "workers.running")[-1].value == 2
    assert _find(points, Z + "preload.modules", state="loaded")[-1].value == 3
    assert not [point for point in points if point.name.startswith(Z + "parses.")]  # no legacy names asked for
