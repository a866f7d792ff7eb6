"""The bench's subprocesses: per-side Airflow homes and environments, starting and reliably stopping
the side runs, and the zygote the zygote side parses through.

Both sides get identical settings and separate SQLite metadata DBs. The environment is built from
scratch for the ``AIRFLOW*`` variables: a user's own ``AIRFLOW__ZYGOTE__SOCKET`` or
``AIRFLOW__CORE__SQL_ALCHEMY_CONN`` must never leak into the bench, or it would parse into (or through)
their real deployment.

Each subprocess gets its own session, so a Ctrl-C at the terminal reaches only the bench, which then
stops them in order. Stopping snapshots the whole tree first: once a parent dies its children are
re-parented and could no longer be found, and a leaked parse worker would skew the next round. The
zygote is started by the package's own launcher (``zygote.launcher``), one per parallelism value, so
every parallelism has its own cold round (no preload state file is kept between zygotes).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import structlog

from zygote.bench.corpus import VARIABLE_KEY, VARIABLE_VALUE
from zygote.client import control
from zygote.launcher import ZygoteLaunchError, ZygoteProcess, airflow_command

log = structlog.get_logger(__name__)

SIDES: tuple[str, ...] = ("stock", "zygote")
FILE_PROCESS_INTERVAL = 86_400
PROCESSOR_TIMEOUT = 300
SETUP_TIMEOUT = 300.0
START_TIMEOUT = 180.0
STATUS_TIMEOUT = 10.0


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
    what = " ".join(cmd[1:])
    spawned = spawn(what, cmd, env, log_path)
    try:
        code = spawned.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(spawned, grace=5.0)
        raise BenchError(f"{what} did not finish within {timeout:.0f} s:\n{spawned.log_tail(20)}") from None
    if code != 0:
        raise BenchError(f"{what} failed with exit code {code}:\n{spawned.log_tail(20)}")


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
    run_checked(airflow_command("db", "migrate"), env, log_path)
    run_checked(airflow_command("variables", "set", VARIABLE_KEY, VARIABLE_VALUE), env, log_path)


def prepare_homes(homes: Homes) -> None:
    """Both sides' metadata DBs, created the same way, concurrently (each takes several seconds)."""
    with ThreadPoolExecutor(max_workers=len(SIDES)) as pool:
        for future in [pool.submit(prepare_home, homes, side) for side in SIDES]:
            future.result()


@dataclass
class Spawned:
    """A subprocess the bench owns, with the log file its output goes to."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 25) -> str:
        """Last lines of the subprocess's output, for error messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def spawn(name: str, cmd: list[str], env: dict[str, str], log_path: Path) -> Spawned:
    """Start ``cmd`` in a new session with stdout and stderr going to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        popen = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    log.debug("bench.spawned", name=name, pid=popen.pid)
    return Spawned(name=name, popen=popen, log_path=log_path)


def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of ``pid`` (empty if it is gone)."""
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def stop(started: Spawned, grace: float = 10.0) -> None:
    """SIGTERM the root, wait up to ``grace`` seconds, then SIGKILL whatever of its tree remains."""
    family = descendants(started.pid)
    if started.popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            started.popen.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            started.popen.wait(timeout=grace)
    family.extend(descendants(started.pid))
    _kill_all(family)
    _kill_group(started)
    with contextlib.suppress(subprocess.TimeoutExpired):
        started.popen.wait(timeout=5.0)


def _kill_all(procs: list[psutil.Process]) -> None:
    """SIGKILL each process still alive; psutil checks the create time, so a reused pid is safe."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=5.0)


def _kill_group(started: Spawned) -> None:
    """Kill the session's process group (pgid == root pid), which catches orphans we never saw."""
    if started.popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            started.popen.kill()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(started.pid, signal.SIGKILL)


class Registry:
    """Every subprocess the bench started, so one ``finally`` can stop them all, even on Ctrl-C."""

    def __init__(self) -> None:
        self._live: dict[int, Spawned] = {}

    def spawn(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path) -> Spawned:
        return self.adopt(name, spawn(name, cmd, env, log_path).popen, log_path)

    def adopt(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> Spawned:
        """Track a subprocess started elsewhere (the zygote, by ``zygote.launcher``)."""
        spawned = Spawned(name=name, popen=popen, log_path=log_path)
        self._live[spawned.pid] = spawned
        return spawned

    def stop(self, started: Spawned, grace: float = 10.0) -> None:
        self._live.pop(started.pid, None)
        stop(started, grace)

    def stop_all(self) -> None:
        """Stop newest first: side runs before the zygote they talk to."""
        for started in reversed(list(self._live.values())):
            self.stop(started, grace=5.0)


log = structlog.get_logger(__name__)


class ZygoteServer:
    """One zygote, started by the package's launcher and registered so ``stop_all`` reaches it too."""

    def __init__(self, registry: Registry, env: dict[str, str], log_path: Path) -> None:
        self.registry = registry
        self.env = env
        self.log_path = log_path
        self.process: ZygoteProcess | None = None
        self.spawned: Spawned | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError("zygote not started")
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def start(self, timeout: float = START_TIMEOUT) -> dict[str, Any]:
        """``airflow zygote serve``; returns its status once healthy (forker ready), else :class:`BenchError`."""
        self.process = ZygoteProcess.start(self.env, self.log_path, wait=False)
        self.spawned = self.registry.adopt("zygote", self.process.popen, self.log_path)
        try:
            status = self.process.wait_healthy(timeout)
        except ZygoteLaunchError as exc:
            raise BenchError(str(exc)) from None
        log.info("bench.zygote_ready", pid=self.pid, forker=status.get("forker", {}).get("pid"))
        return status

    def status(self) -> dict[str, Any] | None:
        """The zygote's status through its own control client; ``None`` while it does not answer."""
        if self.process is None:
            return None
        try:
            return self.process.status(timeout=STATUS_TIMEOUT)
        except control.ControlError:
            return None

    def restart(self) -> str:
        """Replace a zygote that died (or never came up); returns why, for the report's warnings.

        A zygote should never die on its own, but on a shared machine something else may signal it;
        one restart keeps the remaining rounds meaningful (the restarted zygote is cold again).
        """
        code = self.process.popen.returncode if self.process is not None else None
        tail = self.process.log_tail(5) if self.process is not None else ""
        self.stop()
        log.warning("bench.zygote_restarted", exit_code=code, log_tail=tail)
        self.start()
        return f"the zygote exited (code {code}) and was restarted; the next zygote round is cold again"

    def stop(self) -> None:
        """SIGTERM (the zygote drains, with the short drain timeout the bench set), then SIGKILL its tree."""
        if self.spawned is not None:
            self.registry.stop(self.spawned, grace=15.0)
        self.process = self.spawned = None
