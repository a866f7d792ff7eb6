"""Airflow's real ``Stats``, configured from ``[metrics]`` to a UDP listener of the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from airflow._shared.observability.metrics.base_stats_logger import NoStatsLogger
from airflow.observability import stats
from statsd_listener import StatsdListener


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[StatsdListener]:
    """``[metrics] statsd_on`` pointed at a UDP socket of this test; call ``start_stats`` after more env."""
    sink = StatsdListener()
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(sink.port))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
    yield sink
    stats.initialize(factory=NoStatsLogger, export_legacy_names=True)
    sink.close()
