"""An Airflow home for one fault scenario: its own DB copy, DAG folder, socket and marker file.

Every DAG file these tests write appends one line to a marker file when its top level runs:
``<unix time> <pid> <ppid> <file name>``. That counts every parse, whoever ran it (a zygote worker or
a local fallback child), with a timestamp for throughput windows and a parent pid that tells the two
apart (a local child's parent is the dag-processor; a zygote worker's is the forker).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from zygote_harness import socket_endpoint

HEADER = "from __future__ import annotations\nimport datetime, os, time\n"
FAST_LOOP = {
    "PYTHONHASHSEED": "0",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "0",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "1",
    "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
    "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "3600",
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
    "AIRFLOW__LOGGING__DAG_PROCESSOR_LOG_TARGET": "file",
}


def marker_only(marker: Path) -> str:
    """A file Airflow parses (it names airflow and DAG) that records its parse and defines no DAG."""
    return (
        HEADER
        + "# an airflow DAG file that defines none\n"
        + f"with open({str(marker)!r}, 'a') as _marker:\n"
        + "    _marker.write(f'{time.time():.3f} {os.getpid()} {os.getppid()} {os.path.basename(__file__)}\\n')\n"
    )


def marker_dag(marker: Path, dag_id: str, task_id: str = "t0", body: str = "") -> str:
    """A small DAG file that records its own parse in ``marker`` before building its DAG."""
    return (
        marker_only(marker)
        + "from airflow.sdk import DAG\n"
        + "from airflow.providers.standard.operators.empty import EmptyOperator\n"
        + body
        + f"with DAG({dag_id!r}, schedule=None, start_date=datetime.datetime(2024, 1, 1)) as dag:\n"
        + f"    EmptyOperator(task_id={task_id!r})\n"
    )


@dataclass(frozen=True)
class Parse:
    at: float
    pid: int
    ppid: int
    file: str


@dataclass
class FaultHome:
    """One side of a scenario (zygote-backed or stock): env, DB, DAG folder, marker."""

    root: Path
    env: dict[str, str]

    @classmethod
    def create(
        cls, root: Path, migrated_db: Path, base_env: dict[str, str], dags: Path | None = None, **settings: str
    ) -> FaultHome:
        root.mkdir(parents=True)
        home = root / "home"
        home.mkdir()
        shutil.copy(migrated_db, home / "airflow.db")
        if dags is None:
            dags = root / "dags"
            dags.mkdir()
        env = {**base_env, **FAST_LOOP}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__ZYGOTE__SOCKET": socket_endpoint(),
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(root / "bundles"),
            }
        )
        env.update(settings)
        return cls(root, env)

    @property
    def dags(self) -> Path:
        return Path(self.env["AIRFLOW__CORE__DAGS_FOLDER"])

    @property
    def db(self) -> Path:
        return Path(self.env["AIRFLOW_HOME"]) / "airflow.db"

    @property
    def marker(self) -> Path:
        return self.root / "parses.log"

    def write_marker_dags(self, count: int, prefix: str = "f", body: str = "", dags: bool = True) -> list[str]:
        """``count`` files of one small DAG each (or of none: the cheapest parse Airflow makes)."""
        names = []
        for index in range(count):
            name = f"{prefix}{index:03d}.py"
            text = marker_dag(self.marker, name[:-3], body=body) if dags else marker_only(self.marker)
            (self.dags / name).write_text(text)
            names.append(name)
        return names

    def parses(self) -> list[Parse]:
        if not self.marker.exists():
            return []
        found = []
        for line in self.marker.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                found.append(Parse(float(parts[0]), int(parts[1]), int(parts[2]), parts[3]))
        return found

    def parses_between(self, start: float, end: float) -> list[Parse]:
        return [p for p in self.parses() if start <= p.at < end]

    def python(self, code: str) -> None:
        """Run ``code`` against this home's DB in a fresh interpreter (Airflow's ORM, not ours)."""
        subprocess.run([sys.executable, "-c", code], env=self.env, check=True, capture_output=True, timeout=180)

    def rows(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the live DB; the dag-processor may hold the write lock for a moment."""
        for _ in range(50):
            try:
                with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as conn:
                    return conn.execute(query, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                time.sleep(0.1)
        raise AssertionError(f"DB stayed locked: {query}")

    def active_dags(self) -> set[str]:
        return {dag_id for (dag_id,) in self.rows("select dag_id from dag where not is_stale")}

    def stale_dags(self) -> set[str]:
        return {dag_id for (dag_id,) in self.rows("select dag_id from dag where is_stale")}

    def import_errors(self) -> list[tuple[str, str]]:
        return [(str(f), str(s)) for f, s in self.rows("select filename, stacktrace from import_error")]

    def last_parsed(self) -> dict[str, datetime]:
        return {dag_id: _utc(ts) for dag_id, ts in self.rows("select dag_id, last_parsed_time from dag") if ts}

    def heartbeat_age(self) -> float | None:
        """Seconds since the running DagProcessorJob's last heartbeat (what ``/health`` checks)."""
        rows = self.rows(
            "select latest_heartbeat from job where job_type = 'DagProcessorJob' and state = 'running'"
            " order by id desc limit 1"
        )
        if not rows or not rows[0][0]:
            return None
        return (datetime.now(timezone.utc) - _utc(rows[0][0])).total_seconds()


def _utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed
