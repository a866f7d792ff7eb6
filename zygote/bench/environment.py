"""Per-side Airflow homes and environments: identical settings, separate SQLite metadata DBs.

The environment is built from scratch for the ``AIRFLOW*`` variables: a user's own
``AIRFLOW__ZYGOTE__SOCKET`` or ``AIRFLOW__CORE__SQL_ALCHEMY_CONN`` must never leak into the bench,
or it would parse into (or through) their real deployment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import structlog

from zygote.bench.corpus import VARIABLE_KEY, VARIABLE_VALUE

log = structlog.get_logger(__name__)

SIDES: tuple[str, ...] = ("stock", "zygote")
FILE_PROCESS_INTERVAL = 86_400
PROCESSOR_TIMEOUT = 300
SETUP_TIMEOUT = 300.0


class BenchError(RuntimeError):
    """The bench cannot go on (setup failed, the zygote did not come up...)."""


@dataclass(frozen=True)
class Homes:
    """Where everything of one bench invocation lives; ``root`` is a short temp dir (ipc path limit)."""

    root: Path
    corpus: Path

    def home(self, side: str) -> Path:
        return self.root / side

    def socket(self, parallelism: int) -> str:
        """A fresh socket per zygote; the directory is left for the zygote to create owner-only."""
        return f"ipc://{self.root}/sock-p{parallelism}/zygote.sock"


def airflow_cmd(*args: str) -> list[str]:
    """``airflow ...`` through this interpreter, so the bench never picks up another install."""
    return [sys.executable, "-m", "airflow", *args]


def clean_environ() -> dict[str, str]:
    """The current environment without any Airflow configuration."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}


def side_env(homes: Homes, side: str, parallelism: int, approved_modules: str) -> dict[str, str]:
    """Environment of one side; both sides get identical ``[core]``/``[dag_processor]`` settings.

    ``print_stats_interval`` must keep Airflow's default: with ``max_runs`` the loop only learns the
    file list once ``print_stats`` has filled its stats dict, so a huge interval makes ``max_runs=1``
    exit before parsing anything.
    """
    home = homes.home(side)
    env = clean_environ()
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(homes.corpus),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": str(parallelism),
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(FILE_PROCESS_INTERVAL),
            "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": str(PROCESSOR_TIMEOUT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if side == "zygote":
        env.update(zygote_settings(homes, parallelism, approved_modules))
    return env


def zygote_settings(homes: Homes, parallelism: int, approved_modules: str) -> dict[str, str]:
    """``[zygote]`` for the zygote side: no silent local fallback, or we would time stock twice."""
    return {
        "AIRFLOW__ZYGOTE__SOCKET": homes.socket(parallelism),
        "AIRFLOW__ZYGOTE__APPROVED_MODULES": approved_modules,
        "AIRFLOW__ZYGOTE__FALLBACK": "fail",
        "AIRFLOW__ZYGOTE__PRELOAD_STATE_FILE": "",
        "AIRFLOW__ZYGOTE__DRAIN_TIMEOUT": "5",
        "AIRFLOW__ZYGOTE__WORKER_TIMEOUT": str(PROCESSOR_TIMEOUT),
    }


def run_checked(cmd: list[str], env: dict[str, str], log_path: Path, timeout: float = SETUP_TIMEOUT) -> None:
    """Run a setup command to completion, raising :class:`BenchError` with its output tail on failure."""
    with log_path.open("ab") as out:
        done = subprocess.run(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise BenchError(f"{' '.join(cmd[2:])} failed with exit code {done.returncode}:\n{tail}")


def prepare_home(homes: Homes, side: str) -> None:
    """``airflow db migrate`` and the corpus's Variable in one side's fresh home.

    Running an Airflow command first also writes the home's ``airflow.cfg``. That matters: a process
    started in a home without one sees some multi-line defaults with different whitespace than every
    later process reading the generated file, and the zygote would refuse the client for a config
    mismatch (``dag_bundle_config_list``).
    """
    home = homes.home(side)
    home.mkdir(parents=True, exist_ok=True)
    env = side_env(homes, side, 1, "")
    log_path = homes.root / f"setup-{side}.log"
    log.info("bench.db_migrate", side=side, home=str(home))
    run_checked(airflow_cmd("db", "migrate"), env, log_path)
    run_checked(airflow_cmd("variables", "set", VARIABLE_KEY, VARIABLE_VALUE), env, log_path)


def prepare_homes(homes: Homes) -> None:
    """Both sides' metadata DBs, created the same way, concurrently (each takes several seconds)."""
    with ThreadPoolExecutor(max_workers=len(SIDES)) as pool:
        for future in [pool.submit(prepare_home, homes, side) for side in SIDES]:
            future.result()
