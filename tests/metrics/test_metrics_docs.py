"""The README's "Metrics" table and the statsd-exporter mapping tell the truth about what is sent."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from metric_docs import MAPPING, DocumentedMetric, documented_metrics
from statsd_listener import StatsdLine, StatsdListener, start_airflow_stats

from zygote.client.metrics import ZygoteMetrics

pytestmark = pytest.mark.timeout(60)

PREFIX = "airflow."
FULL_LOAD = {
    "ready": True,
    "free": 3,
    "running": 1,
    "queued": 0,
    "max_workers": 4,
    "max_queued": 4,
    "generation": 1,
    "gauges": {
        "pooled": 1,
        "frozen_objects": 10,
        "forker_rss": 1000,
        "preload": {"loaded": 1},
        "refused": {"overloaded": 1},
    },
}


def _every_event(metrics: ZygoteMetrics) -> None:
    metrics.session_connected()
    metrics.session_refused("config_mismatch")
    metrics.load_received(FULL_LOAD)
    metrics.parse_bypassed("zygote_unavailable", "local")
    metrics.parse_started()
    stats = {"dispatch_ms": 1.0, "fork_ms": 1.0, "wall_s": 1.0, "peak_uss": 1, "peak_pss": 1}
    metrics.parse_finished("exited", stats)


def _emitted(listener: StatsdListener) -> list[StatsdLine]:
    start_airflow_stats()
    _every_event(ZygoteMetrics(legacy_names=True))
    listener.wait_for(lambda lines: len(lines) >= 33, 10, "every metric")
    return listener.drain(0.3)


def _documented_for(line: StatsdLine, docs: list[DocumentedMetric]) -> list[tuple[DocumentedMetric, bool]]:
    name = line.name.removeprefix(PREFIX)
    found = [(doc, False) for doc in docs if doc.name == name]
    return found + [(doc, True) for doc in docs if doc.tags and doc.legacy_pattern().match(name)]


def test_every_emitted_name_is_documented_with_its_type_and_every_documented_name_is_emitted(
    listener: StatsdListener,
) -> None:
    docs = documented_metrics()
    lines = _emitted(listener)
    seen: set[tuple[str, bool]] = set()
    for line in lines:
        matches = _documented_for(line, docs)
        assert len(matches) == 1, (line, matches)
        doc, legacy = matches[0]
        assert doc.statsd_type == line.type, line
        seen.add((doc.name, legacy))
    assert seen == {(doc.name, False) for doc in docs} | {(doc.name, True) for doc in docs if doc.tags}


def test_the_legacy_column_is_the_name_with_its_tags() -> None:
    for doc in documented_metrics():
        expected = doc.name + "".join(f".{{{tag}}}" for tag in doc.tags) if doc.tags else ""
        assert doc.legacy == expected, doc


def _mappings() -> list[dict[str, Any]]:
    values = yaml.safe_load(MAPPING.read_text())
    mappings: list[dict[str, Any]] = values["statsd"]["extraMappings"]
    return mappings


def test_mapping_labels_every_tagged_metric_and_nothing_else() -> None:
    expected = []
    for doc in documented_metrics():
        if doc.tags:
            prom = (PREFIX + doc.name).replace(".", "_")
            labels = {tag: f"${index}" for index, tag in enumerate(doc.tags, 1)}
            expected.append({"match": PREFIX + doc.name + ".*" * len(doc.tags), "name": prom, "labels": labels})
            expected.append({"match": PREFIX + doc.name, "name": prom + "_all"})
    assert _mappings() == expected


def _glob(match: str) -> re.Pattern[str]:
    """statsd_exporter's glob: ``*`` is one dot-free component."""
    return re.compile("[^.]+".join(re.escape(part) for part in match.split("*")) + "$")


def _prometheus(name: str, mappings: list[dict[str, Any]]) -> tuple[str, frozenset[str]]:
    """The series a statsd_exporter with these mappings makes of ``name``: first match wins."""
    for mapping in mappings:
        if _glob(mapping["match"]).match(name):
            return mapping["name"], frozenset(mapping.get("labels", {}))
    return name.replace(".", "_"), frozenset()


def test_each_prometheus_name_has_one_label_set(listener: StatsdListener) -> None:
    mappings = _mappings()
    series: dict[str, set[frozenset[str]]] = {}
    for line in _emitted(listener):
        name, labels = _prometheus(line.name, mappings)
        series.setdefault(name, set()).add(labels)
    assert all(len(label_sets) == 1 for label_sets in series.values()), series
    assert series["airflow_dag_processing_zygote_bypassed"] == {frozenset({"mode", "reason"})}
    assert series["airflow_dag_processing_zygote_fork"] == {frozenset()}
