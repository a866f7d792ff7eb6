"""The sidecar run for real: the image built from deploy/Dockerfile, the zygote and the dag-processor
as two podman containers wired as deploy/docker-compose.yaml wires them, on SQLite.

The base is the stand-in (deploy/standin/) because no image registry is reachable here; the rest is
the production file. Each container gets the environment and the mounts of its compose service
(the metadata DB switched to a SQLite file only the dag-processor mounts), so the test checks the
deploy files rather than a copy of them. Runs only from `make containers` (marker ``containers``).

The tests share one pair of containers and run in file order: rows first (on the initial DAG
files), then the socket and the environment, then the health check.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from podman_support import REPO, Container, Pair, build_images, env_args, podman, rows, wait_for

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1800)]

COMPOSE = REPO / "deploy" / "docker-compose.yaml"
DB_DIR = "/opt/airflow/db"
SQLITE_CONN = f"sqlite:///{DB_DIR}/airflow.db"
PARSE_DEADLINE_S = 300.0
HEALTH_DEADLINE_S = 240.0
STOP_TIMEOUT_S = 90
SLOW_PARSE_S = 25

HEADER = "from __future__ import annotations\nimport datetime\nfrom airflow.sdk import DAG, task, task_group\n"
START = "start_date=datetime.datetime(2024, 1, 1)"
CORPUS = {
    "taskflow.py": HEADER
    + f"with DAG('taskflow', schedule='@daily', {START}, tags=['containers']):\n"
    + "    @task\n    def extract() -> int:\n        return 1\n"
    + "    @task\n    def load(x: int) -> None:\n        print(x)\n"
    + "    load(extract())\n",
    "grouped.py": HEADER
    + f"with DAG('grouped', schedule=None, {START}, params={{'n': 3}}):\n"
    + "    @task_group\n    def section() -> None:\n"
    + "        @task\n        def one() -> None: ...\n"
    + "        @task\n        def two() -> None: ...\n"
    + "        one() >> two()\n"
    + "    section()\n",
    "two_dags.py": HEADER + "".join(f"with DAG('pair_{i}', schedule=None, {START}):\n    pass\n" for i in (1, 2)),
    "broken.py": "# airflow DAG\ndef broken(:\n",
}
INITIAL_DAGS = {"taskflow", "grouped", "pair_1", "pair_2"}


# --------------------------------------------------------------------------- compose -> podman run


def compose_service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"][name]
    return service


def service_env(name: str) -> dict[str, str]:
    """The service's environment from the compose file, with the metadata DB moved to SQLite."""
    env = {key: str(value) for key, value in compose_service(name)["environment"].items()}
    if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in env:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = SQLITE_CONN
        env["AIRFLOW__CORE__FERNET_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
        env["AIRFLOW__API_AUTH__JWT_SECRET"] = secrets.token_hex(32)
    # Pick up new DAG files within seconds rather than the default five minutes (both containers,
    # so the parse-relevant configuration stays identical).
    env["AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"] = "5"
    return env


def service_mounts(name: str, pair: Pair) -> list[str]:
    """``-v`` options for the service's compose volumes: named volumes per test, the DAG folder on the host."""
    args: list[str] = []
    for spec in compose_service(name)["volumes"]:
        if spec.startswith("${AIRFLOW_DAGS_DIR"):
            host, target = str(pair.dags), spec.partition("}:")[2]
        else:
            source, _, target = spec.partition(":")
            host = pair.volume(source)
        args += ["-v", f"{host}:{target}"]
    return args


def service_run_options(name: str) -> list[str]:
    service = compose_service(name)
    options: list[str] = []
    for capability in service.get("cap_drop", []):
        options += ["--cap-drop", capability]
    for option in service.get("security_opt", []):
        options += ["--security-opt", option.replace(":true", "")]
    if "stop_grace_period" in service:
        options += ["--stop-timeout", str(STOP_TIMEOUT_S)]
    return options


# --------------------------------------------------------------------------- DB rows


def serialized_dags(db: Path) -> dict[str, Any]:
    return {
        dag_id: (dag_hash, json.loads(zlib.decompress(compressed)) if compressed else json.loads(data))
        for dag_id, data, compressed, dag_hash in rows(
            db, "select dag_id, data, data_compressed, dag_hash from serialized_dag"
        )
    }


def parse_rows(db: Path) -> dict[str, Any]:
    """What a dag-processor writes for a parse: serialized DAGs, DAG rows, code, import errors."""
    return {
        "serialized_dag": serialized_dags(db),
        "dag": rows(db, "select dag_id, relative_fileloc, bundle_name, is_stale from dag"),
        "dag_code": rows(db, "select dag_id, fileloc, source_code_hash from dag_code"),
        "import_error": rows(db, "select filename, bundle_name, stacktrace from import_error"),
    }


def dag_ids(db: Path) -> set[str]:
    return {row[0] for row in rows(db, "select dag_id from serialized_dag")} if db.exists() else set()


# --------------------------------------------------------------------------- the pair


class Sidecar:
    """The running pair plus the stock dag-processor's DB for comparison."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.db_dir = pair.root / "db"
        self.stock_dir = pair.root / "stock-db"
        self.zygote_env = service_env("zygote")
        self.client_env = service_env("dag-processor")
        self.zygote: Container | None = None
        self.client: Container | None = None

    @property
    def db(self) -> Path:
        return self.db_dir / "airflow.db"

    def prepare(self) -> None:
        self.pair.dags.mkdir(mode=0o755)
        self.pair.dags.chmod(0o755)
        for name, text in CORPUS.items():
            (self.pair.dags / name).write_text(text)
        for directory in (self.db_dir, self.stock_dir):
            directory.mkdir()
            os.chown(directory, 50000, 0)
        self.pair.run_once(
            "-v", f"{self.db_dir}:{DB_DIR}", *env_args(self.client_env), command=("airflow", "db", "migrate")
        )
        shutil.copy2(self.db, self.stock_dir / "airflow.db")
        os.chown(self.stock_dir / "airflow.db", 50000, 0)

    def start_zygote(self) -> Container:
        self.zygote = self.pair.run(
            "zygote",
            *service_mounts("zygote", self.pair),
            *env_args(self.zygote_env),
            *service_run_options("zygote"),
            command=tuple(compose_service("zygote")["command"]),
        )
        return self.zygote

    def start_client(self) -> Container:
        self.client = self.pair.run(
            "dag-processor",
            *service_mounts("dag-processor", self.pair),
            "-v",
            f"{self.db_dir}:{DB_DIR}",
            *env_args(self.client_env),
            *service_run_options("dag-processor"),
            command=tuple(compose_service("dag-processor")["command"]),
        )
        return self.client

    def start_stock(self) -> Container:
        """Airflow's own dag-processor, one pass over the same files, into a copy of the same DB."""
        return self.pair.run(
            "stock",
            "-v",
            f"{self.pair.dags}:/opt/airflow/dags:ro",
            "-v",
            f"{self.stock_dir}:{DB_DIR}",
            *env_args(self.client_env),
            command=("airflow", "dag-processor", "--num-runs", "1"),
        )


def wait_healthy(zygote: Container) -> None:
    wait_for(lambda: zygote.healthcheck() == 0, HEALTH_DEADLINE_S, f"{zygote.name} healthy", interval=2.0)


def served(zygote: Container) -> int:
    """Parses the running zygote process has finished (any outcome), from ``airflow zygote status``."""
    report = zygote.status() or {}
    return sum(int(n) for n in report.get("requests", {}).values())


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    image = build_images()
    root = tmp_path_factory.mktemp("containers")
    root.chmod(0o755)
    pair = Pair(image=image, root=root)
    sidecar = Sidecar(pair)
    try:
        sidecar.prepare()
        stock = sidecar.start_stock()
        wait_healthy(sidecar.start_zygote())
        sidecar.start_client()
        exit_code = podman("wait", stock.name, timeout=PARSE_DEADLINE_S).stdout.strip()
        assert exit_code == "0", stock.logs()[-4000:]
        yield sidecar
    finally:
        pair.close()


# --------------------------------------------------------------------------- tests


def test_dags_parsed_through_the_zygote_match_stock_rows(sidecar: Sidecar) -> None:
    assert sidecar.zygote is not None and sidecar.client is not None
    stock_db = sidecar.stock_dir / "airflow.db"
    assert dag_ids(stock_db) == INITIAL_DAGS
    wait_for(lambda: dag_ids(sidecar.db) == INITIAL_DAGS, PARSE_DEADLINE_S, "the pair's first parse of every file")
    wait_for(
        lambda: rows(sidecar.db, "select filename from import_error") == [("broken.py",)],
        PARSE_DEADLINE_S,
        "the import error of broken.py",
    )
    assert parse_rows(sidecar.db) == parse_rows(stock_db)
    # Through the zygote: it finished every file so far, and the client never fell back.
    assert served(sidecar.zygote) >= len(CORPUS)
    assert "zygote.unavailable" not in sidecar.client.logs()


def test_socket_directory_and_socket_modes_and_owner(sidecar: Sidecar) -> None:
    """As deploy/README.md says: a volume the airflow user can write, sock/ 0700 and the socket 0600 in it."""
    assert sidecar.zygote is not None and sidecar.client is not None
    paths = ("/run/airflow-zygote", "/run/airflow-zygote/sock", "/run/airflow-zygote/sock/zygote.sock")
    expected = [
        "770 50000 0 directory",
        "700 50000 0 directory",
        "600 50000 0 socket",
    ]
    for container in (sidecar.zygote, sidecar.client):
        listing = container.exec("stat", "-c", "%a %u %g %F", *paths).stdout.splitlines()
        assert listing == expected, (container.name, listing)
    # Both containers run as the image's airflow user, which is what the socket admits.
    for container in (sidecar.zygote, sidecar.client):
        assert container.exec("id", "-u").stdout.strip() == "50000"
        assert container.exec("id", "-g").stdout.strip() == "0"


def test_zygote_container_has_no_metadata_db_settings(sidecar: Sidecar) -> None:
    assert sidecar.zygote is not None and sidecar.client is not None
    secret_keys = ("AIRFLOW__DATABASE__", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET")

    def settings(container: Container) -> list[str]:
        env = container.inspect()["Config"]["Env"]
        return [entry for entry in env if entry.startswith(secret_keys)]

    assert settings(sidecar.zygote) == []
    assert any(entry.startswith("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=") for entry in settings(sidecar.client))
    # And the running processes did not get any from elsewhere (an env file, the entrypoint).
    environ = sidecar.zygote.exec("cat", "/proc/1/environ").stdout.split("\0")
    assert [entry for entry in environ if entry.startswith(secret_keys)] == []


def gateway_pid(zygote: Container) -> str:
    """The gateway: dumb-init's (PID 1's) only child, since the entrypoint execs the command."""
    children = zygote.exec("cat", "/proc/1/task/1/children").stdout.split()
    assert len(children) == 1, children
    return children[0]


def test_health_check_goes_unhealthy_and_healthy_again(sidecar: Sidecar) -> None:
    zygote = sidecar.zygote
    assert zygote is not None
    assert zygote.healthcheck() == 0
    assert zygote.health() == "healthy"
    pid = gateway_pid(zygote)
    # The shell's kill: the image has no procps.
    zygote.exec("sh", "-c", f"kill -STOP {pid}")
    try:
        wait_for(
            lambda: zygote.healthcheck() != 0 and zygote.health() == "unhealthy",
            HEALTH_DEADLINE_S,
            "unhealthy while the gateway is stopped",
            interval=0.1,
        )
    finally:
        zygote.exec("sh", "-c", f"kill -CONT {pid}")
    wait_healthy(zygote)
    assert zygote.health() == "healthy"


def test_health_check_is_fast(sidecar: Sidecar) -> None:
    """The image's HEALTHCHECK (the lean probe) answers well within its 20 s timeout."""
    zygote = sidecar.zygote
    assert zygote is not None
    timings = []
    for _ in range(3):
        started = time.monotonic()
        assert zygote.healthcheck() == 0
        timings.append(time.monotonic() - started)
    print(f"podman healthcheck run: {', '.join(f'{t:.1f}' for t in timings)} s")
    assert max(timings) < 10.0, timings


SLOW_MARKER = "/tmp/slow-parse-started"


def slow_dag(dag_id: str) -> str:
    """A DAG file whose parse takes SLOW_PARSE_S and leaves a marker in the /tmp of the container
    that runs it: a parse that is surely in flight, and in the zygote, when the zygote stops."""
    return (
        HEADER
        + f"import pathlib, time\npathlib.Path({SLOW_MARKER!r}).touch()\ntime.sleep({SLOW_PARSE_S})\n"
        + f"with DAG({dag_id!r}, schedule=None, {START}):\n    pass\n"
    )


def test_stop_drains_then_local_fallback_then_zygote_again(sidecar: Sidecar) -> None:
    """`podman stop` drains the in-flight parse and exits 0 in the grace period; the dag-processor
    parses locally while the zygote is stopped and through it again after `podman start`."""
    zygote, client = sidecar.zygote, sidecar.client
    assert zygote is not None and client is not None
    (sidecar.pair.dags / "slow.py").write_text(slow_dag("slow"))

    def in_flight() -> bool:
        return zygote.exec("test", "-e", SLOW_MARKER, check=False).returncode == 0

    wait_for(in_flight, PARSE_DEADLINE_S, "the slow parse started in the zygote")
    assert "slow" not in dag_ids(sidecar.db)

    started = time.monotonic()
    podman("stop", "-t", str(STOP_TIMEOUT_S), zygote.name, timeout=STOP_TIMEOUT_S + 60)
    stopped_after = time.monotonic() - started
    state = zygote.state()
    print(f"podman stop of the zygote: {stopped_after:.1f} s, exit code {state['ExitCode']}")
    assert state["ExitCode"] == 0, zygote.logs()[-4000:]
    # It waited for the slow parse (most of SLOW_PARSE_S was still to go), and no longer.
    assert SLOW_PARSE_S / 3 < stopped_after < STOP_TIMEOUT_S
    (draining,) = zygote.events("gateway.draining")
    assert draining["requests"] >= 1
    (stopped,) = zygote.events("gateway.stopped")
    # None of them was cut short: no drain timeout, no kill.
    assert not {"drain_timeout", "killed", "signaled"} & set(stopped["requests"]), stopped
    # The drained parse's result reached the dag-processor: its DAG is written, long before a local
    # re-parse of the file (another SLOW_PARSE_S after its next turn) could have written it.
    wait_for(lambda: "slow" in dag_ids(sidecar.db), SLOW_PARSE_S, "the drained parse's DAG row")
    (sidecar.pair.dags / "slow.py").unlink()

    # The zygote is down: the dag-processor keeps parsing, locally, with one warning.
    (sidecar.pair.dags / "while_down.py").write_text(
        HEADER + f"with DAG('while_down', schedule=None, {START}):\n    pass\n"
    )
    wait_for(lambda: "while_down" in dag_ids(sidecar.db), PARSE_DEADLINE_S, "a DAG parsed while the zygote is down")
    # Airflow's console log format in the dag-processor: "[warning  ] zygote.unavailable ... fallback=local".
    warnings = [line for line in client.logs().splitlines() if "zygote.unavailable" in line]
    assert warnings and all("fallback=local" in line for line in warnings), warnings

    # Started again: the same dag-processor reconnects and parses through it.
    podman("start", zygote.name)
    wait_healthy(zygote)
    (sidecar.pair.dags / "after_restart.py").write_text(
        HEADER + f"with DAG('after_restart', schedule=None, {START}):\n    pass\n"
    )
    wait_for(lambda: "after_restart" in dag_ids(sidecar.db), PARSE_DEADLINE_S, "a DAG parsed after the restart")
    wait_for(lambda: served(zygote) >= 1, PARSE_DEADLINE_S, "parses served by the restarted zygote")
    report = zygote.status() or {}
    assert (report.get("gateway") or {}).get("clients", 0) >= 1, report
