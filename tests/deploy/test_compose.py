"""deploy/docker-compose.yaml run as written with podman-compose, trimmed only where it must be.

The trim, made on a copy: the ``postgres`` service goes (``postgres:16`` cannot be pulled here), so
the metadata DB is a SQLite file on a host folder mounted where the DB services expect it; the
image is the one the container test built (``AIRFLOW_ZYGOTE_IMAGE``, as the file allows), and the
build context is made absolute because the copy lives elsewhere. Everything else (services,
commands, environments, volumes, depends_on conditions, stop grace periods, the health check) is
the file's. Without systemd nothing runs health checks on a timer, so the test runs ``podman
healthcheck run`` on the zygote while ``up`` waits for it, as the timer would.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from podman_support import REPO, WORK, Container, build_images, podman, podman_env, rows, wait_for

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1200)]

COMPOSE = REPO / "deploy" / "docker-compose.yaml"
DB_DIR = "/opt/airflow/db"
DEADLINE_S = 420.0
DAG = (
    "from __future__ import annotations\nimport datetime\nfrom airflow.sdk import DAG\n"
    "with DAG('composed', schedule=None, start_date=datetime.datetime(2024, 1, 1)):\n    pass\n"
)


def podman_compose() -> str:
    found = shutil.which("podman-compose", path=f"{WORK / 'compose-venv' / 'bin'}:{os.environ.get('PATH', '')}")
    if found is None:
        pytest.fail("podman-compose is not installed: run `make containers`, which installs it")
    return found


def trimmed(spec: dict[str, Any], db_host_dir: Path) -> dict[str, Any]:
    """The compose file without postgres, its DB services on SQLite (see the module docstring)."""
    services = spec["services"]
    del services["postgres"]
    del spec["volumes"]["postgres-db"]
    for service in services.values():
        service["build"]["context"] = str(REPO)
        depends = service.get("depends_on", {})
        depends.pop("postgres", None)
        if not depends:
            service.pop("depends_on", None)
        env = service["environment"]
        if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in env:
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{DB_DIR}/airflow.db"
            service.setdefault("volumes", []).append(f"{db_host_dir}:{DB_DIR}")
    return spec


class Project:
    def __init__(self, root: Path, image: str) -> None:
        self.root = root
        self.name = f"zygote-compose-{os.urandom(4).hex()}"
        self.file = root / "docker-compose.yaml"
        self.env = {
            **podman_env(),
            "AIRFLOW_ZYGOTE_IMAGE": image,
            "AIRFLOW_DAGS_DIR": str(root / "dags"),
            "AIRFLOW_FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW_JWT_SECRET": secrets.token_hex(32),
        }

    def compose(self, *args: str, timeout: float = DEADLINE_S) -> subprocess.CompletedProcess[str]:
        command = [podman_compose(), "-p", self.name, "-f", str(self.file), *args]
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)

    def container(self, service: str) -> Container:
        names = podman(
            "ps", "-a", "--filter", f"label=io.podman.compose.project={self.name}",
            "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Names}}",
        ).stdout.split()  # fmt: skip
        assert len(names) == 1, (service, names)
        return Container(names[0])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    image = build_images()
    root = tmp_path_factory.mktemp("compose")
    root.chmod(0o755)
    (root / "dags").mkdir(mode=0o755)
    (root / "dags" / "composed.py").write_text(DAG)
    db = root / "db"
    db.mkdir()
    os.chown(db, 50000, 0)
    spec = trimmed(yaml.safe_load(COMPOSE.read_text()), db)
    project = Project(root, image)
    project.file.write_text(yaml.safe_dump(spec, sort_keys=False))
    try:
        yield project
    finally:
        project.compose("down", "-v", "-t", "0", timeout=300)


def test_compose_up_parses_through_the_zygote_and_stops_cleanly(project: Project) -> None:
    done = threading.Event()
    result: dict[str, subprocess.CompletedProcess[str]] = {}

    def up() -> None:
        result["up"] = project.compose("up", "-d", "--no-build")
        done.set()

    threading.Thread(target=up, daemon=True).start()
    # podman-compose waits for the zygote's service_healthy: be the health-check timer meanwhile.
    zygote = wait_for(lambda: _existing(project, "zygote"), DEADLINE_S, "the zygote container", interval=2.0)

    def up_finished() -> bool:
        if done.is_set():
            return True
        zygote.healthcheck()
        return False

    wait_for(up_finished, DEADLINE_S, "compose up", interval=3.0)
    up_result = result["up"]
    assert up_result.returncode == 0, up_result.stdout[-3000:] + up_result.stderr[-3000:]

    client = project.container("dag-processor")
    db = project.root / "db" / "airflow.db"

    def composed() -> bool:
        try:
            return db.exists() and ("composed",) in rows(db, "select dag_id from serialized_dag")
        except sqlite3.OperationalError:
            return False  # the DB is still being migrated

    wait_for(composed, DEADLINE_S, "the DAG parsed by the compose project's dag-processor", interval=3.0)
    report = zygote.status() or {}
    assert sum(int(n) for n in report.get("requests", {}).values()) >= 1, report
    assert client.events("zygote.unavailable") == []

    stop = project.compose("stop", "-t", "90", timeout=300)
    assert stop.returncode == 0, stop.stdout[-3000:] + stop.stderr[-3000:]
    assert zygote.state()["ExitCode"] == 0, zygote.logs()[-3000:]
    assert zygote.events("gateway.stopped"), zygote.logs()[-3000:]


def _existing(project: Project, service: str) -> Container | None:
    try:
        return project.container(service)
    except AssertionError:
        return None
