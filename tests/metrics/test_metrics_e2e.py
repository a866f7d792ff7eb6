"""A real zygote and ``airflow zygote dag-processor`` with ``[metrics] statsd_on``: the metrics arrive."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from dagfiles import simple_dag
from metric_docs import documented_metrics
from statsd_listener import StatsdLine, StatsdListener
from zygote_harness import AIRFLOW, ZygoteProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

Z = "airflow.dag_processing.zygote."
MIB = 1024 * 1024


def _has(*names: str) -> Any:
    return lambda lines: {line.name for line in lines} >= set(names)


def _values(listener: StatsdListener, name: str) -> list[float]:
    return [line.value for line in listener.named(name)]


def _assert_documented_types(lines: list[StatsdLine]) -> None:
    docs = documented_metrics()
    for line in lines:
        if not line.name.startswith(Z):
            continue
        name = line.name.removeprefix("airflow.")
        kinds = [doc.statsd_type for doc in docs if doc.name == name or (doc.tags and doc.legacy_pattern().match(name))]
        assert kinds == [line.type], line


@pytest.fixture
def statsd_env(airflow_env: dict[str, str]) -> tuple[dict[str, str], StatsdListener]:
    listener = StatsdListener()
    env = {
        **airflow_env,
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "0",
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(listener.port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
    }
    dags = Path(airflow_env["AIRFLOW__CORE__DAGS_FOLDER"])
    for index in range(3):
        (dags / f"metrics_{index}.py").write_text(simple_dag(f"metrics_{index}"))
    return env, listener


def test_statsd_metrics_arrive_through_fallback_zygote_and_fallback_again(
    statsd_env: tuple[dict[str, str], StatsdListener], tmp_path: Path
) -> None:
    """No zygote yet (fallback), then a zygote (parses through it), then the zygote killed (fallback)."""
    env, listener = statsd_env
    log_path = tmp_path / "dag-processor.log"
    with log_path.open("wb") as log:
        processor = subprocess.Popen(
            [AIRFLOW, "zygote", "dag-processor"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    zygote: ZygoteProcess | None = None
    try:
        listener.wait_for(
            _has(Z + "bypassed.local.zygote_unavailable", Z + "fallback.started.zygote_unavailable"),
            120,
            "the fallback counters while no zygote runs",
        )
        zygote = ZygoteProcess.start(env, tmp_path / "zygote.log", wait=False)
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
            ),
            120,
            "per-parse metrics through the zygote",
        )
        os.killpg(zygote.popen.pid, signal.SIGKILL)
        zygote.popen.wait(10)
        listener.wait_for(
            lambda lines: len(listener.named(Z + "fallback.started.zygote_unavailable")) == 2,
            60,
            "a second fallback period after the zygote was killed",
        )
    finally:
        if zygote is not None:
            zygote.stop()
        processor.terminate()
        try:
            processor.wait(60)
        except subprocess.TimeoutExpired:
            processor.kill()
            processor.wait(10)
    listener.drain(0.5)
    _assert_documented_types(listener.lines)
    assert all(0 < value < 10_000 for value in _values(listener, Z + "fork"))
    assert all(0 < value < 60_000 for value in _values(listener, Z + "dispatch"))
    assert all(0 < value < 60_000 for value in _values(listener, Z + "worker.wall"))
    assert all(MIB < value < 4096 * MIB for value in _values(listener, Z + "worker.peak_uss"))
    assert all(MIB < value < 4096 * MIB for value in _values(listener, Z + "worker.peak_pss"))
    assert len(listener.named(Z + "sessions.connected")) == 1
    assert _values(listener, Z + "fallback.active") == [1.0, 0.0, 1.0]
    assert min(_values(listener, Z + "fallback.duration.zygote_unavailable")) > 0
    assert len(listener.named(Z + "bypassed.local.zygote_unavailable")) >= 2
    # Airflow's own dag-processor metrics travel the same way, so the pipeline is the stock one.
    assert any(line.name.startswith("airflow.dag_processing.") and Z not in line.name for line in listener.lines)
