"""The sidecar run for real: the image built from deploy/Dockerfile, deploy/docker-compose.yaml run by
podman-compose, and deploy/kubernetes/ by ``podman play kube``, on SQLite.

The base is the stand-in (deploy/standin/) because no image registry is reachable here; the rest is
the production file. One scenario, so that every Airflow process it starts earns its seconds on a
2-core machine: the compose project (compose_project.py) is the pair every check runs on (its
zygote and dag-processor are the two containers of the sidecar, wired by the file itself); the
stock dag-processor for the row comparison and the play-kube pod (kube_pod.py) run beside it on
snapshots of the DB that the project's ``airflow-init`` migrated. Runs only from `make containers`
(marker ``containers``); the tests share that scenario and run in file order.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from compose_project import DB_DIR, Project
from kube_pod import DAG_ID, Pod
from podman_support import Container, built_image, env_args, podman, rows, wait_for

pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

PARSE_DEADLINE_S = 300.0
HEALTH_DEADLINE_S = 240.0
STOP_TIMEOUT_S = 90
SLOW_PARSE_S = 15

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
    try:
        return {row[0] for row in rows(db, "select dag_id from serialized_dag")} if db.exists() else set()
    except sqlite3.OperationalError:
        return set()  # not migrated yet


def snapshot(db: Path, target: Path) -> None:
    """A consistent copy of a SQLite DB other containers may be writing, owned by the image's user."""
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chown(target.parent, 50000, 0)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    os.chown(target, 50000, 0)


@dataclass
class Scenario:
    project: Project
    pod: Pod
    dags: Path
    stock: Container
    stock_db: Path

    @property
    def zygote(self) -> Container:
        return self.project.container("zygote")

    @property
    def client(self) -> Container:
        return self.project.container("dag-processor")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    image = built_image()
    root = tmp_path_factory.mktemp("containers")
    root.chmod(0o755)
    dags = root / "dags"
    dags.mkdir(mode=0o755)
    for name, text in CORPUS.items():
        (dags / name).write_text(text)
    (root / "compose").mkdir()
    (root / "kube").mkdir()
    project = Project(root / "compose", image, dags)
    pod = Pod(root / "kube", image)
    stock = Container(f"zygote-test-stock-{project.name}")
    stock_db = root / "stock-db" / "airflow.db"
    try:
        for service in project.bring_up():
            if service != "api-server":
                continue
            # The first service after airflow-init: the DB is migrated and nothing has parsed into
            # it yet. The stock dag-processor and the pod start from copies of it, beside the rest.
            snapshot(project.db, stock_db)
            snapshot(project.db, pod.db)
            # Airflow's own dag-processor, one pass over the same files with the same settings.
            podman(
                "run", "-d", "--name", stock.name, "--network", "none",
                "-v", f"{dags}:/opt/airflow/dags:ro", "-v", f"{stock_db.parent}:{DB_DIR}",
                *env_args(project.service_env("dag-processor")), image, "airflow", "dag-processor", "--num-runs", "1",
            )  # fmt: skip
            pod.play()
        yield Scenario(project, pod, dags, stock, stock_db)
    finally:
        podman("rm", "-f", "-t", "0", stock.name, check=False)
        project.down()
        pod.close()


def served(zygote: Container) -> int:
    """Parses the running zygote process has finished (any outcome), from its status query."""
    report = zygote.status() or {}
    return sum(int(n) for n in report.get("requests", {}).values())


def wait_healthy(zygote: Container) -> None:
    wait_for(lambda: zygote.healthcheck() == 0, HEALTH_DEADLINE_S, f"{zygote.name} healthy", interval=2.0)


def test_compose_up_starts_every_service(scenario: Scenario) -> None:
    """The file as written: airflow-init ran to completion, then the api-server, the scheduler and
    the pair came up in the order of its depends_on conditions (compose_project.py)."""
    init = scenario.project.container("airflow-init")
    assert (init.state()["Status"], init.state()["ExitCode"]) == ("exited", 0)
    for service in ("api-server", "scheduler", "zygote", "dag-processor"):
        container = scenario.project.container(service)
        assert container.state()["Status"] == "running", (service, container.logs()[-3000:])
    # Proven; their CPU is better spent on the pair from here on.
    others = [scenario.project.container(service).name for service in ("api-server", "scheduler")]
    podman("stop", "-t", "30", *others, timeout=120)


def test_dags_parsed_through_the_zygote_match_stock_rows(scenario: Scenario) -> None:
    db = scenario.project.db
    exit_code = podman("wait", scenario.stock.name, timeout=PARSE_DEADLINE_S).stdout.strip()
    assert exit_code == "0", scenario.stock.logs()[-4000:]
    assert dag_ids(scenario.stock_db) == INITIAL_DAGS
    wait_for(lambda: dag_ids(db) == INITIAL_DAGS, PARSE_DEADLINE_S, "the pair's first parse of every file")
    wait_for(
        lambda: rows(db, "select filename from import_error") == [("broken.py",)],
        PARSE_DEADLINE_S,
        "the import error of broken.py",
    )
    assert parse_rows(db) == parse_rows(scenario.stock_db)
    # Through the zygote: it finished every file so far, and the client never fell back.
    assert served(scenario.zygote) >= len(CORPUS)
    assert "zygote.unavailable" not in scenario.client.logs()


def test_socket_directory_and_socket_modes_and_owner(scenario: Scenario) -> None:
    """As deploy/README.md says: a volume the airflow user can write, sock/ 0700 and the socket 0600 in it."""
    paths = ("/run/airflow-zygote", "/run/airflow-zygote/sock", "/run/airflow-zygote/sock/zygote.sock")
    expected = ["770 50000 0 directory", "700 50000 0 directory", "600 50000 0 socket"]
    for container in (scenario.zygote, scenario.client):
        listing = container.exec("stat", "-c", "%a %u %g %F", *paths).stdout.splitlines()
        assert listing == expected, (container.name, listing)
        # Both run as the image's airflow user, which is what the socket admits.
        assert container.exec("id", "-u").stdout.strip() == "50000"
        assert container.exec("id", "-g").stdout.strip() == "0"


def test_zygote_container_has_no_metadata_db_settings(scenario: Scenario) -> None:
    secret_keys = ("AIRFLOW__DATABASE__", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET")

    def settings(container: Container) -> list[str]:
        env = container.inspect()["Config"]["Env"]
        return [entry for entry in env if entry.startswith(secret_keys)]

    assert settings(scenario.zygote) == []
    assert any(entry.startswith("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=") for entry in settings(scenario.client))
    # And the running processes did not get any from elsewhere (an env file, the entrypoint).
    environ = scenario.zygote.exec("cat", "/proc/1/environ").stdout.split("\0")
    assert [entry for entry in environ if entry.startswith(secret_keys)] == []


def gateway_pid(zygote: Container) -> str:
    """The gateway: dumb-init's (PID 1's) only child, since the entrypoint execs the command."""
    children = zygote.exec("cat", "/proc/1/task/1/children").stdout.split()
    assert len(children) == 1, children
    return children[0]


def timed_healthcheck(zygote: Container) -> float:
    """One healthy ``podman healthcheck run`` (the image's HEALTHCHECK), within the check's own timeout."""
    timeout_s = zygote.inspect()["Config"]["Healthcheck"]["Timeout"] / 1e9
    started = time.monotonic()
    assert zygote.healthcheck() == 0
    took = time.monotonic() - started
    assert took < timeout_s, (took, timeout_s)
    return took


def test_health_check_goes_unhealthy_and_healthy_again(scenario: Scenario) -> None:
    zygote = scenario.zygote
    first = timed_healthcheck(zygote)
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
    last = timed_healthcheck(zygote)
    assert zygote.health() == "healthy"
    print(f"podman healthcheck run: {first:.1f} s, {last:.1f} s")


SLOW_MARKER = "/tmp/slow-parse-started"


def slow_dag(dag_id: str) -> str:
    """A DAG file whose parse takes SLOW_PARSE_S and leaves a marker in the /tmp of the container
    that runs it: a parse that is surely in flight, and in the zygote, when the zygote stops."""
    return (
        HEADER
        + f"import pathlib, time\npathlib.Path({SLOW_MARKER!r}).touch()\ntime.sleep({SLOW_PARSE_S})\n"
        + f"with DAG({dag_id!r}, schedule=None, {START}):\n    pass\n"
    )


def test_stop_drains_then_local_fallback_then_zygote_again(scenario: Scenario) -> None:
    """`podman stop` drains the in-flight parse and exits 0 in the grace period; the dag-processor
    parses locally while the zygote is stopped and through it again after `podman start`."""
    zygote, client, db = scenario.zygote, scenario.client, scenario.project.db
    (scenario.dags / "slow.py").write_text(slow_dag("slow"))

    def in_flight() -> bool:
        return zygote.exec("test", "-e", SLOW_MARKER, check=False).returncode == 0

    wait_for(in_flight, PARSE_DEADLINE_S, "the slow parse started in the zygote", interval=0.5)
    assert "slow" not in dag_ids(db)

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
    wait_for(lambda: "slow" in dag_ids(db), SLOW_PARSE_S, "the drained parse's DAG row")
    (scenario.dags / "slow.py").unlink()

    # The zygote is down: the dag-processor keeps parsing, locally, with one warning.
    (scenario.dags / "while_down.py").write_text(
        HEADER + f"with DAG('while_down', schedule=None, {START}):\n    pass\n"
    )
    wait_for(lambda: "while_down" in dag_ids(db), PARSE_DEADLINE_S, "a DAG parsed while the zygote is down")
    # Airflow's console log format in the dag-processor: "[warning  ] zygote.unavailable ... fallback=local".
    warnings = [line for line in client.logs().splitlines() if "zygote.unavailable" in line]
    assert warnings and all("fallback=local" in line for line in warnings), warnings

    # Started again: the same dag-processor reconnects and parses through it.
    podman("start", zygote.name)
    wait_healthy(zygote)
    (scenario.dags / "after_restart.py").write_text(
        HEADER + f"with DAG('after_restart', schedule=None, {START}):\n    pass\n"
    )
    wait_for(lambda: "after_restart" in dag_ids(db), PARSE_DEADLINE_S, "a DAG parsed after the restart")
    wait_for(lambda: served(zygote) >= 1, PARSE_DEADLINE_S, "parses served by the restarted zygote")
    report = zygote.status() or {}
    assert (report.get("gateway") or {}).get("clients", 0) >= 1, report


def test_play_kube_sidecar_pod_parses_through_the_zygote(scenario: Scenario) -> None:
    pod = scenario.pod
    zygote, client = pod.container("zygote"), pod.container("dag-processor")
    wait_for(lambda: DAG_ID in dag_ids(pod.db), PARSE_DEADLINE_S, "the DAG parsed in the pod", interval=3.0)
    report = wait_for(zygote.status, PARSE_DEADLINE_S, "the zygote's status")
    assert sum(int(n) for n in report.get("requests", {}).values()) >= 1, report
    env = zygote.inspect()["Config"]["Env"]
    assert [e for e in env if e.startswith(("AIRFLOW__DATABASE__", "AIRFLOW__CORE__FERNET_KEY"))] == []
    assert any(e.startswith("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=") for e in client.inspect()["Config"]["Env"])

    applied = {}
    for container in (zygote, client):
        details = container.inspect()
        host = details["HostConfig"]
        applied[container.name] = {
            "read_only_rootfs": host.get("ReadonlyRootfs"),
            "cap_drop_all": len(host.get("CapDrop") or []) >= 10,
            "memory_limit": host.get("Memory"),
            "stop_timeout": details["Config"].get("StopTimeout"),
            "user": details["Config"].get("User"),
        }
    print("play kube applied:", json.dumps(applied, indent=1))
    assert all(fields["read_only_rootfs"] and fields["cap_drop_all"] for fields in applied.values()), applied
