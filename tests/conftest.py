"""Shared fixtures: a real Airflow home (SQLite, ``airflow db migrate``) and a real zygote.

The Airflow home is set before anything imports Airflow, so the test process and every
subprocess read the same configuration. Readiness is by handshake (``status`` answers), never by
sleeping.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="zygote-tests-home-"))
_BASE_ENV = {
    "AIRFLOW_HOME": str(_SESSION_HOME),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(_SESSION_HOME / "dags"),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_SESSION_HOME / 'airflow.db'}",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "AIRFLOW__ZYGOTE__HEARTBEAT_INTERVAL": "0.5",
    "AIRFLOW__ZYGOTE__HEARTBEAT_TIMEOUT": "5",
}
os.environ.update(_BASE_ENV)
(_SESSION_HOME / "dags").mkdir(exist_ok=True)

sys.path.insert(0, str(Path(__file__).parent))

from zygote_harness import (  # noqa: E402
    AIRFLOW,
    SOCKET_DIRS,
    ParseDriver,
    ZygoteProcess,
    make_airflow_env,
    module_zygote,
    socket_endpoint,
)


def _migrate(db: Path) -> None:
    env = {**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{db}"}
    subprocess.run([AIRFLOW, "db", "migrate"], check=True, capture_output=True, timeout=300, env=env)


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow metadata DB made by ``airflow db migrate`` once per run.

    Under pytest-xdist every worker has its own session home; the first worker to need a DB migrates
    one into the run's shared temp folder (under a lock) and every worker copies that file, so two
    workers on two cores do not each spend a migration's CPU.
    """
    db = _SESSION_HOME / "airflow.db"
    if db.exists():
        return db
    if "PYTEST_XDIST_WORKER" not in os.environ:
        _migrate(db)
        return db
    shared = tmp_path_factory.getbasetemp().parent / "migrated-airflow.db"
    with (shared.parent / "migrated-airflow.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not shared.exists():
            partial = shared.with_suffix(".partial")
            _migrate(partial)
            partial.rename(shared)
    shutil.copy(shared, db)
    return db


@pytest.fixture
def airflow_env(tmp_path: Path, migrated_db: Path) -> dict[str, str]:
    """Environment for subprocesses: a private copy of the migrated DB and a private socket."""
    return make_airflow_env(tmp_path, migrated_db)


@pytest.fixture
def inproc_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The test process's own Airflow config, a private socket and a private DAG subfolder.

    For tests whose client side runs in this process: the zygote must see the same
    parse-relevant config (the handshake compares it), so only the socket differs.
    """
    dags = _SESSION_HOME / "dags" / request.node.name[:60]
    shutil.rmtree(dags, ignore_errors=True)
    dags.mkdir(parents=True)
    env = os.environ.copy()
    env["AIRFLOW__ZYGOTE__SOCKET"] = socket_endpoint()
    env["ZYGOTE_TEST_DAGS"] = str(dags)
    return env


@pytest.fixture
def dags(inproc_env: dict[str, str]) -> Path:
    return Path(inproc_env["ZYGOTE_TEST_DAGS"])


@pytest.fixture
def zygote_factory(tmp_path: Path) -> Iterator[Any]:
    """Start zygotes (``airflow zygote serve``) that are all stopped after the test."""
    started: list[ZygoteProcess] = []

    def start(env: dict[str, str], **extra_env: str) -> ZygoteProcess:
        log = tmp_path / f"zygote-{len(started)}.log"
        process = ZygoteProcess.start(env, log, {k: str(v) for k, v in extra_env.items()})
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZygoteProcess]:
    """A running zygote sharing this process's config, shared by a module's tests (start-up costs
    seconds); tests that stop it or need other settings start their own with ``zygote_factory``."""
    yield from module_zygote(tmp_path_factory)


@pytest.fixture
def connection(zygote: ZygoteProcess) -> Iterator[Any]:
    """A client session (relay thread) to ``zygote``, with its ledger."""
    from zygote.client.connection import ZygoteConnection
    from zygote.client.ledger import Ledger

    conn = ZygoteConnection(zygote.settings, Ledger())
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def driver(tmp_path: Path, migrated_db: Path) -> ParseDriver:
    logs = tmp_path / "parse-logs"
    logs.mkdir()
    return ParseDriver(logs)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Leave nothing behind in /tmp: the session's Airflow home and socket directories."""
    for directory in [str(_SESSION_HOME), *SOCKET_DIRS]:
        shutil.rmtree(directory, ignore_errors=True)
