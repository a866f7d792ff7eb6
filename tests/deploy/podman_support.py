"""Podman for the container tests: the image `make containers` built, containers, and waiting on them.

Podman runs with the ``containers.conf`` that ``deploy/standin/build.sh`` writes (runc, cgroupfs, no
systemd, nofile/nproc ulimits at the machine's own hard limits). Without systemd nothing runs
health checks on a timer, so the tests run ``podman healthcheck run`` themselves: that is the
image's HEALTHCHECK command, run the way the timer would, and it moves the container's health
status the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
WORK = Path(os.environ.get("ZYGOTE_CONTAINERS_WORK", REPO / "build" / "containers"))
IMAGE = os.environ.get("ZYGOTE_CONTAINERS_IMAGE", "localhost/airflow-zygote:containers-test")
COMMAND_TIMEOUT_S = 300.0

T = TypeVar("T")


def podman_path() -> str:
    podman = shutil.which("podman")
    if podman is None:
        pytest.fail("podman is not installed: run `make containers`, which installs it")
    return podman


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(WORK / "containers.conf")}


def podman(*args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [podman_path(), *args], env=podman_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def built_image() -> str:
    """The image `make containers` built (deploy/standin/build.sh: the stand-in base, then deploy/Dockerfile)."""
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.fail(f"no image {IMAGE}: run `make containers`, which builds it")
    return IMAGE


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 1.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Container:
    """One container of the pair, by name; removed by ``Pair.close``."""

    name: str

    def inspect(self) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(podman("inspect", "--type", "container", self.name).stdout)
        return data[0]

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.inspect()["State"]
        return state

    def health(self) -> str:
        state = self.state()
        health = state.get("Health") or state.get("Healthcheck") or {}
        return str(health.get("Status", ""))

    def healthcheck(self) -> int:
        """One run of the image's HEALTHCHECK (what systemd's timer would run): 0 healthy, 1 not."""
        return podman("healthcheck", "run", self.name, check=False, timeout=120).returncode

    def exec(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *command, check=check)

    def status(self) -> dict[str, Any] | None:
        result = self.exec("python", "-m", "zygote.client.health", "--json", check=False)
        try:
            report: dict[str, Any] = json.loads(result.stdout)
        except json.JSONDecodeError:
            return None
        return report

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def events(self, name: str) -> list[dict[str, Any]]:
        """The container's structlog events called ``name`` (JSON lines: its stderr is no tty)."""
        found = []
        for line in self.logs().splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                event = json.loads(line)
                if event.get("event") == name:
                    found.append(event)
        return found


def env_args(env: dict[str, str]) -> list[str]:
    return [arg for key, value in sorted(env.items()) for arg in ("-e", f"{key}={value}")]


def rows(db: Path, query: str) -> list[tuple[Any, ...]]:
    """Rows of a query on a SQLite DB a container may be writing (read-only, retried while locked)."""
    for _ in range(30):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
                return sorted(conn.execute(query).fetchall(), key=repr)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(1)
    raise AssertionError(f"{db} stayed locked")
