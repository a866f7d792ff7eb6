"""deploy/docker-compose.yaml run as written with podman-compose, trimmed only where it must be.

The trim, made on a copy: the ``postgres`` service goes (``postgres:16`` cannot be pulled here), so
the metadata DB is a SQLite file on a host folder mounted where the DB services expect it; the
image is the one the tests built (``AIRFLOW_ZYGOTE_IMAGE``, as the file allows), and the build
context is made absolute because the copy lives elsewhere. Two test settings make the scenario
take seconds where the shipped values take minutes, in every container alike (so the handshake's
configuration fingerprint still matches): new DAG files are picked up within 5 s, and the
zygote's health check turns unhealthy on its first failure. Everything else (services, commands,
environments, volumes, depends_on conditions, stop grace periods, cap_drop, security_opt, the
health check command and timeout) is the file's.

The services start in the order of the file's ``depends_on`` conditions, walked by the test, one
``podman-compose up -d --no-deps SERVICE`` each once its conditions hold, because podman-compose
1.6 on podman 4.3 cannot do it itself: it ignores ``service_healthy`` before podman 4.6 (the
dag-processor would start before the zygote can serve it), and it creates each container with
``--requires`` on its dependencies, so starting the api-server, the scheduler and the
dag-processor each ran the finished ``airflow-init`` (a full ``airflow db migrate``) again.
Without systemd nothing runs health checks on a timer, so the walk runs ``podman healthcheck
run`` on the zygote until ``service_healthy`` holds, as the timer would.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from podman_support import REPO, WORK, Container, podman, podman_env, wait_for

COMPOSE = REPO / "deploy" / "docker-compose.yaml"
DB_DIR = "/opt/airflow/db"
DEADLINE_S = 420.0
# Test settings (module docstring): seconds instead of the shipped five minutes and three retries.
REFRESH_INTERVAL_S = "5"
HEALTH_RETRIES = 1


def podman_compose() -> str:
    found = shutil.which("podman-compose", path=f"{WORK / 'tools' / 'bin'}:{os.environ.get('PATH', '')}")
    if found is None:
        pytest.fail("podman-compose is not installed: run `make containers`, which installs it")
    return found


def trimmed(spec: dict[str, Any], db_host_dir: Path) -> dict[str, Any]:
    """The compose file without postgres, its DB services on SQLite, plus the test settings."""
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
        env["AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"] = REFRESH_INTERVAL_S
        if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in env:
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{DB_DIR}/airflow.db"
            service.setdefault("volumes", []).append(f"{db_host_dir}:{DB_DIR}")
    services["zygote"]["healthcheck"]["retries"] = HEALTH_RETRIES
    return spec


class Project:
    """One compose project from the trimmed copy, with its own name, DAG folder and DB folder."""

    def __init__(self, root: Path, image: str, dags: Path) -> None:
        self.root = root
        self.name = f"zygote-compose-{os.urandom(4).hex()}"
        self.file = root / "docker-compose.yaml"
        self.db_dir = root / "db"
        self.env = {
            **podman_env(),
            "AIRFLOW_ZYGOTE_IMAGE": image,
            "AIRFLOW_DAGS_DIR": str(dags),
            "AIRFLOW_FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "AIRFLOW_JWT_SECRET": os.urandom(32).hex(),
        }
        self.spec = trimmed(yaml.safe_load(COMPOSE.read_text()), self.db_dir)

    @property
    def db(self) -> Path:
        return self.db_dir / "airflow.db"

    def service_env(self, service: str) -> dict[str, str]:
        """The service's environment as the containers get it (the file's ``${...}`` filled in)."""
        env = {key: str(value) for key, value in self.spec["services"][service]["environment"].items()}
        secrets = {
            "AIRFLOW__CORE__FERNET_KEY": "AIRFLOW_FERNET_KEY",
            "AIRFLOW__API_AUTH__JWT_SECRET": "AIRFLOW_JWT_SECRET",
        }
        for key, variable in secrets.items():
            if key in env:
                env[key] = self.env[variable]
        return env

    def compose(self, *args: str, timeout: float = DEADLINE_S) -> subprocess.CompletedProcess[str]:
        command = [podman_compose(), "-p", self.name, "-f", str(self.file), *args]
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)

    def bring_up(self) -> Iterator[str]:
        """Start the services round by round, each once its ``depends_on`` conditions hold (module
        docstring), yielding each service's name when they do, so the caller can act in between."""
        self.db_dir.mkdir()
        os.chown(self.db_dir, 50000, 0)
        self.file.write_text(yaml.safe_dump(self.spec, sort_keys=False))
        services: dict[str, dict[str, Any]] = self.spec["services"]
        started: set[str] = set()
        while len(started) < len(services):
            ready = [
                name
                for name, service in services.items()
                if name not in started and set(service.get("depends_on", {})) <= started
            ]
            assert ready, f"a depends_on cycle among {set(services) - started}"
            for name in ready:
                for dependency, rule in services[name].get("depends_on", {}).items():
                    self._wait_condition(dependency, rule["condition"])
                yield name
            # One podman-compose run per round: each took 10 s and more on a loaded machine.
            result = self.compose("up", "-d", "--no-build", "--no-deps", *ready)
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            started.update(ready)

    def _wait_condition(self, service: str, condition: str) -> None:
        container = self.container(service)
        if condition == "service_completed_successfully":
            wait_for(lambda: container.state()["Status"] == "exited", DEADLINE_S, f"{service} to finish")
            assert container.state()["ExitCode"] == 0, container.logs()[-4000:]
        elif condition == "service_healthy":
            wait_for(lambda: container.healthcheck() == 0, DEADLINE_S, f"{service} healthy", interval=2.0)
        else:
            assert condition == "service_started", condition

    def existing(self, service: str) -> Container | None:
        names = podman(
            "ps", "-a", "--filter", f"label=io.podman.compose.project={self.name}",
            "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Names}}",
        ).stdout.split()  # fmt: skip
        assert len(names) <= 1, (service, names)
        return Container(names[0]) if names else None

    def container(self, service: str) -> Container:
        found = self.existing(service)
        assert found is not None, f"no container for the {service} service"
        return found

    def down(self) -> None:
        self.compose("down", "-v", "-t", "0", timeout=300)
