"""Real zygotes and ``airflow zygote dag-processor`` runs: the metrics arrive over StatsD and OTLP.

One module-scoped run of each backend, all started together so the folder pays about one start-up:
the OpenTelemetry zygote and dag-processor run while the StatsD scenario goes on, and the StatsD
zygote starts at once on a socket path of its own, renamed to the path the dag-processor connects
to once its first fallback period was seen: the zygote "appears" already warm.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagfiles import misbehaving, simple_dag
from metric_docs import documented_metrics
from otlp_collector import OtlpCollector
from statsd_listener import StatsdLine, StatsdListener
from zygote_harness import AIRFLOW, ZygoteProcess, make_airflow_env, settings_for, wait_for

from zygote.cli.commands import _human
from zygote.client.control import query_status
from zygote.gateway.status import PRELOAD_STATES

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(540)]

Z = "airflow.dag_processing.zygote."
MIB = 1024 * 1024


def _has(*names: str) -> Any:
    return lambda lines: {line.name for line in lines} >= set(names)


def _values(listener: StatsdListener, name: str) -> list[float]:
    return [line.value for line in listener.named(name)]


def _periods_started(lines: list[StatsdLine]) -> list[StatsdLine]:
    return [line for line in lines if line.name.startswith(Z + "fallback.started.")]


def _assert_documented_types(lines: list[StatsdLine]) -> None:
    docs = documented_metrics()
    for line in lines:
        if not line.name.startswith(Z):
            continue
        name = line.name.removeprefix("airflow.")
        kinds = [doc.statsd_type for doc in docs if doc.name == name or (doc.tags and doc.legacy_pattern().match(name))]
        assert kinds == [line.type], line


def _otel_env(collector: OtlpCollector) -> dict[str, str]:
    return {
        "AIRFLOW__METRICS__OTEL_ON": "True",
        "AIRFLOW__METRICS__OTEL_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__OTEL_PORT": str(collector.port),
        "AIRFLOW__METRICS__OTEL_INTERVAL_MILLISECONDS": "500",
    }


def _statsd_env(listener: StatsdListener) -> dict[str, str]:
    return {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(listener.port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
    }


def _start_processor(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen([AIRFLOW, "zygote", "dag-processor"], env=env, stdout=log, stderr=subprocess.STDOUT)


def _stop_processor(processor: subprocess.Popen[bytes]) -> None:
    processor.terminate()
    try:
        processor.wait(60)
    except subprocess.TimeoutExpired:
        processor.kill()
        processor.wait(10)


@dataclass
class Run:
    """One backend's zygote and dag-processor."""

    env: dict[str, str]
    zygote: ZygoteProcess
    processor: subprocess.Popen[bytes]


def _run_env(folder: Path, migrated_db: Path, name: str, metrics: dict[str, str]) -> dict[str, str]:
    """A private Airflow home with two DAG files, re-parsed every 3 s (a fresh parse after each change)."""
    env = {**make_airflow_env(folder, migrated_db), **metrics}
    env["AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL"] = "3"
    for index in range(2):
        (Path(env["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{name}_{index}.py").write_text(simple_dag(f"{name}_{index}"))
    return env


DAG_CODE_METRIC = """
from airflow.sdk.observability import stats

with open(f"/proc/{os.getppid()}/cmdline", "rb") as parent:
    stats.incr("zygote_test.dag_code." + ("zygote" if b"zygote.forker" in parent.read() else "stock"))
"""
"""A parse's own metric, named after who forked the parse: a zygote worker sends it as a stock child does."""


def _ipc_path(env: dict[str, str]) -> Path:
    return Path(env["AIRFLOW__ZYGOTE__SOCKET"].removeprefix("ipc://"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Iterator[dict[str, Any]]:
    """Both pairs started at once; the StatsD zygote binds ``warming.sock`` beside the client's path."""
    listener, collector = StatsdListener(), OtlpCollector()
    statsd_folder, otel_folder = tmp_path_factory.mktemp("statsd"), tmp_path_factory.mktemp("otel")
    statsd_env = _run_env(statsd_folder, migrated_db, "statsd", _statsd_env(listener))
    (Path(statsd_env["AIRFLOW__CORE__DAGS_FOLDER"]) / "dag_code_metric.py").write_text(misbehaving(DAG_CODE_METRIC))
    warming = {"AIRFLOW__ZYGOTE__SOCKET": f"ipc://{_ipc_path(statsd_env).with_name('warming.sock')}"}
    otel_env = _run_env(otel_folder, migrated_db, "otel", _otel_env(collector))
    zygotes = [
        ZygoteProcess.start({**statsd_env, **warming}, statsd_folder / "zygote.log", wait=False),
        ZygoteProcess.start(otel_env, otel_folder / "zygote.log", wait=False),
    ]
    processors = [
        _start_processor(env, folder / "dag-processor.log")
        for env, folder in ((statsd_env, statsd_folder), (otel_env, otel_folder))
    ]
    try:
        yield {
            "statsd": Run(statsd_env, zygotes[0], processors[0]),
            "otel": Run(otel_env, zygotes[1], processors[1]),
            "listener": listener,
            "collector": collector,
        }
    finally:
        _stop_all(processors, zygotes)
        listener.close()
        collector.close()


def _stop_all(processors: list[subprocess.Popen[bytes]], zygotes: list[ZygoteProcess]) -> None:
    """SIGTERM to everything at once (each drains on its own), then wait for each."""
    for process in [*processors, *(zygote.popen for zygote in zygotes)]:
        process.terminate()
    for processor in processors:
        _stop_processor(processor)
    for zygote in zygotes:
        zygote.stop()


def test_statsd_metrics_arrive_through_fallback_zygote_and_fallback_again(runs: dict[str, Any]) -> None:
    """No zygote yet (fallback), then a zygote (parses through it), then the zygote killed (fallback)."""
    run: Run = runs["statsd"]
    listener: StatsdListener = runs["listener"]
    listener.wait_for(
        _has(
            Z + "bypassed.local.zygote_unavailable",
            Z + "fallback.started.zygote_unavailable",
            "airflow.zygote_test.dag_code.stock",
        ),
        240,  # a dag-processor start took over 2 minutes at a load average of 15
        "the fallback counters while no zygote runs",
    )
    warming = _ipc_path(run.zygote.env)
    wait_for(lambda: warming.exists() or run.zygote.popen.poll() is not None, 90, "the zygote's socket")
    warming.rename(_ipc_path(run.env))  # the zygote appears where the dag-processor looks for it
    listener.wait_for(
        _has(
            Z + "fallback.ended.zygote_unavailable",
            Z + "sessions.connected",
            Z + "parses.exited",
            Z + "dispatch",
            Z + "fork",
            Z + "worker.wall",
            Z + "worker.peak_uss",
            Z + "worker.peak_pss",
            Z + "workers.pooled",
            Z + "forker.rss",
            Z + "forker.frozen_objects",
            "airflow.zygote_test.dag_code.zygote",
            *(Z + f"preload.modules.{state}" for state in PRELOAD_STATES),
        ),
        180,
        "per-parse metrics and the zygote-wide gauges through the zygote",
    )
    text = _human(query_status(settings_for(run.env), timeout_s=30))  # the socket was renamed
    assert text.startswith("healthy:   True"), text
    assert "recent:    used: of the last" in text and re.search(r"workers:   running .*, pooled \d+", text), text
    assert "forker:    pid" in text and "threads 1" in text, text
    periods = len(_periods_started(listener.drain()))
    os.killpg(run.zygote.popen.pid, signal.SIGKILL)
    run.zygote.popen.wait(10)
    listener.wait_for(
        lambda lines: len(_periods_started(lines)) > periods, 60, "a new fallback period after the zygote was killed"
    )
    listener.drain(0.5)
    _assert_documented_types(listener.lines)
    assert all(0 < value < 10_000 for value in _values(listener, Z + "fork"))
    assert all(0 < value < 60_000 for value in _values(listener, Z + "dispatch"))
    assert all(0 < value < 60_000 for value in _values(listener, Z + "worker.wall"))
    assert all(MIB < value < 4096 * MIB for value in _values(listener, Z + "worker.peak_uss"))
    assert all(MIB < value < 4096 * MIB for value in _values(listener, Z + "worker.peak_pss"))
    assert all(50 * MIB < value < 4096 * MIB for value in _values(listener, Z + "forker.rss"))
    pooled = _values(listener, Z + "workers.pooled")  # the default warm pool: 4 idle workers at most
    assert pooled and max(pooled) >= 1 and all(0 <= value <= 4 for value in pooled), pooled
    assert max(_values(listener, Z + "forker.frozen_objects")) > 10_000
    assert len(listener.named(Z + "sessions.connected")) >= 1
    active = _values(listener, Z + "fallback.active")  # periods open and close in turn, and one is open now
    assert active == [float(index % 2 == 0) for index in range(len(active))] and active[-1] == 1.0, active
    assert min(_values(listener, Z + "fallback.duration.zygote_unavailable")) > 0
    assert len(listener.named(Z + "bypassed.local.zygote_unavailable")) >= 2
    # Airflow's own dag-processor metrics travel the same way, so the pipeline is the stock one.
    assert any(line.name.startswith("airflow.dag_processing.") and Z not in line.name for line in listener.lines)


def test_otel_metrics_arrive_at_an_otlp_collector_from_a_single_threaded_forker(runs: dict[str, Any]) -> None:
    """The same through ``[metrics] otel_on`` on both sides: tags arrive as OTLP attributes, forks go on."""
    run: Run = runs["otel"]
    points = runs["collector"].wait_for(
        lambda found: {Z + "parses", Z + "fork", Z + "forker.rss", Z + "preload.modules"} <= {p.name for p in found},
        240,
        "the zygote metrics over OTLP",
    )
    status = run.zygote.status(timeout=30)
    assert status["forker"]["threads"] == 1, status["forker"]  # Airflow's exporter thread was stopped
    assert status["requests"].get("exited", 0) >= 1 and not status["requests"].get("fork_refused"), status["requests"]
    parses = [p for p in points if p.name == Z + "parses"]
    assert {p.attributes for p in parses} == {(("outcome", "exited"),)}
    assert max(p.value for p in parses) >= 1
    assert all(p.kind == "exponential_histogram" and p.count >= 1 for p in points if p.name == Z + "fork")
    preload = {p.attributes for p in points if p.name == Z + "preload.modules"}
    assert preload == {(("state", state),) for state in PRELOAD_STATES}
    assert all(p.kind == "gauge" and p.value > 50 * MIB for p in points if p.name == Z + "forker.rss")
    # Airflow's own dag-processor metrics reach the same collector: the pipeline is the stock one.
    assert any(p.name.startswith("airflow.dag_processing.") and Z not in p.name for p in points)
