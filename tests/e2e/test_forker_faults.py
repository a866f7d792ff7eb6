"""Faults of the deployments people run, handled by the forker: the zygote keeps serving.

Real zygotes, real forks, real rlimits: the secrets cache server Airflow starts in the forker
survives the stray-killing after every worker; a fork the kernel refuses answers that one request;
a warm-up that hangs cannot hang start-up; a thread that appears in the forker later retires the
generation instead of refusing every spawn.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from dagfiles import HEADER, simple_dag, write
from preload_support import connected, dags_folder, parse, zygote_env
from zygote_harness import ParseDriver, RawClient, ZygoteProcess, spawn_message, wait_for

from zygote import linux

pytestmark = pytest.mark.e2e


@contextmanager
def _raw(zygote: ZygoteProcess) -> Iterator[RawClient]:
    client = RawClient(zygote.settings.socket)
    try:
        client.hello()
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZygoteProcess]:
    """Without a warm pool: these tests make the fork on a request's path fail (ADR 0006)."""
    process = ZygoteProcess.start(zygote_env(warm_workers="0"), tmp_path_factory.mktemp("zygote") / "zygote.log")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def raw(zygote: ZygoteProcess) -> Iterator[RawClient]:
    with _raw(zygote) as client:
        yield client


def _started_then_killed(client: RawClient, request_id: str, path: Path) -> Any:
    """The request's terminal reply: its error, or its exited after the worker started and was killed."""
    from protocol import Error, Exited, Signal, Started

    client.send(spawn_message(request_id, path))
    started = client.expect((Started, Error), request_id=request_id)
    if isinstance(started, Error):
        return started
    client.send(Signal(id=request_id, signum=signal.SIGKILL))
    return client.expect(Exited, request_id=request_id)


def test_secrets_cache_server_survives_every_worker(
    zygote_factory: Any, driver: ParseDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__SECRETS__USE_CACHE", "True")  # both sides, as the handshake wants
    monkeypatch.setenv("AIRFLOW_VAR_ZT_COLOR", "blue")
    zygote = zygote_factory(zygote_env())
    dags = dags_folder("forker-secrets-cache")
    body = "from airflow.sdk import Variable\ncolor = Variable.get('zt_color')\n"
    text = (
        HEADER
        + body
        + simple_dag("cache_placeholder").split(HEADER, 1)[1].replace("'cache_placeholder'", "f'cache_{color}'")
    )
    path = write(dags, "cache_reader.py", text)
    with connected(zygote) as connection:
        for _ in range(6):  # every parse after the first used to fail: the cache server was killed
            parsed = parse(driver, connection, path)
            assert parsed.import_errors == {}
            assert parsed.dag_ids == ["cache_blue"]
            assert parsed.entry.outcome == "exited"


def test_a_refused_fork_answers_that_request_and_the_forker_keeps_serving(
    zygote: ZygoteProcess, raw: RawClient, dags: Path
) -> None:
    path = write(dags, "fork_limits.py", simple_dag("fork_limits"))
    assert _started_then_killed(raw, "before", path).outcome == "killed"
    forker_pid = zygote.status()["forker"]["pid"]
    soft, hard = resource.prlimit(forker_pid, resource.RLIMIT_NOFILE)
    open_now = len(os.listdir(f"/proc/{forker_pid}/fd"))
    resource.prlimit(forker_pid, resource.RLIMIT_NOFILE, (open_now + 3, hard))  # too few for 6 socketpairs
    try:
        error = _started_then_killed(raw, "limited", path)
        assert error.code == "fork_failed"
        assert "EMFILE" in error.message
        assert zygote.status()["forker"]["fork_failures"] == 1
    finally:
        resource.prlimit(forker_pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert _started_then_killed(raw, "after", path).outcome == "killed"
    forker = zygote.status()["forker"]
    assert forker["pid"] == forker_pid  # the same generation serves on
    # THP "always" makes a copy-on-write fault copy 2 MiB: then the forker and its workers opt out
    assert forker["thp_mode"] == linux.transparent_huge_pages_mode()
    assert forker["thp_disabled"] is (forker["thp_mode"] == "always")


def test_a_hanging_warmup_is_killed_after_its_bound(zygote_factory: Any, tmp_path: Path, driver: ParseDriver) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "airflow_local_settings.py").write_text(
        "import time\n\n\ndef dag_policy(dag):\n"
        "    while dag.dag_id == 'airflow_zygote_warmup':  # a policy doing I/O without a timeout\n"
        "        time.sleep(1)\n"
    )
    env = zygote_env(warmup_timeout="3")
    env["PYTHONPATH"] = os.pathsep.join([str(policies), env["PYTHONPATH"]])
    zygote = zygote_factory(env)  # waits until healthy: start-up did not hang
    assert [event["timeout_s"] for event in zygote.events("forker.warmup_timeout")] == [3.0]
    sys.path.insert(0, str(policies))  # the handshake compares cluster policies: the client has the same
    try:
        with connected(zygote) as connection:
            parsed = parse(driver, connection, write(dags_folder("forker-warmup"), "after_warmup.py", simple_dag("w1")))
    finally:
        sys.path.remove(str(policies))
    assert parsed.dag_ids == ["w1"]


def test_a_thread_that_appears_later_retires_the_generation(zygote_factory: Any, dags: Path) -> None:
    # No warm pool: the first fork is then a request's (with a pool, a refill meets the thread first)
    options = {"approved_modules": "zt_forker_thread_after_fork", "preload_modules": "zt_forker_thread_after_fork"}
    zygote = zygote_factory(zygote_env(warm_workers="0", **options))
    first = zygote.status()["forker"]
    assert zygote.status()["preload"]["zt_forker_thread_after_fork"]["state"] == "loaded"
    path = write(dags, "thread_later.py", simple_dag("thread_later"))
    with _raw(zygote) as client:
        assert _started_then_killed(client, "forks-and-leaves-a-thread", path).outcome == "killed"
        refused = _started_then_killed(client, "refused", path)
        assert refused.code == "fork_refused" and "native threads" in refused.message

    def replaced() -> bool:
        status = zygote.status()
        return bool(status["healthy"]) and status["forker"]["generation"] > first["generation"]

    wait_for(replaced, 90, "a new forker generation")
    with _raw(zygote) as client:  # a new session: a silent one is dropped by heartbeat_timeout
        assert _started_then_killed(client, "served-again", path).outcome == "killed"
    assert [event["generation"] for event in zygote.events("forker.retired")] == [first["generation"]]
