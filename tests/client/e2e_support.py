"""Builds the end-to-end DAG folder and reads back what a dag-processor wrote to its DB."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import airflow.example_dags

EXAMPLES = Path(airflow.example_dags.__file__).parent
HEADER = "from __future__ import annotations\nimport datetime\nfrom airflow.sdk import DAG\n"
START = "start_date=datetime.datetime(2024, 1, 1)"

EXTRA_FILES = {
    "variable_found.py": HEADER
    + "from airflow.sdk import Variable\n"
    + f"with DAG('var_' + Variable.get('zygote_found'), schedule=None, {START}):\n    pass\n",
    "variable_missing.py": HEADER
    + "from airflow.sdk import Variable\n"
    + f"with DAG('var_missing_' + Variable.get('zygote_missing'), schedule=None, {START}):\n    pass\n",
    "connection_found.py": HEADER
    + "from airflow.sdk import BaseHook\n"
    + f"with DAG('conn_' + BaseHook.get_connection('zygote_conn').host, schedule=None, {START}):\n    pass\n",
    "connection_missing.py": HEADER
    + "from airflow.sdk import BaseHook\n"
    + f"with DAG('conn_missing_' + BaseHook.get_connection('nope').host, schedule=None, {START}):\n    pass\n",
    "sys_exit.py": "# airflow DAG\nimport sys\nsys.exit()\n",
    "syntax_error.py": "# airflow DAG\ndef broken(:\n",
    "uses_helper.py": HEADER + "from zygote_helpers.factory import make_dag\nmake_dag('from_helper')\n",
    "inflation.py": HEADER + "with DAG('inflates', schedule=None, start_date=datetime.datetime.now()):\n    pass\n",
}
HELPER = (
    HEADER
    + f"def make_dag(dag_id: str) -> DAG:\n    with DAG(dag_id, schedule=None, {START}) as dag:\n        pass\n    return dag\n"
)
ZIPPED = HEADER + f"with DAG('zipped_one', schedule=None, {START}):\n    pass\n"


def build_dag_folder(folder: Path) -> None:
    """Airflow's example DAGs plus the edge cases the issue lists."""
    shutil.copytree(EXAMPLES, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name, text in EXTRA_FILES.items():
        (folder / name).write_text(text)
    helpers = folder / "zygote_helpers"
    helpers.mkdir()
    (helpers / "__init__.py").write_text("")
    (helpers / "factory.py").write_text(HELPER)
    with zipfile.ZipFile(folder / "zipped_dags.zip", "w") as archive:
        archive.writestr("zipped_dag.py", ZIPPED)


def seed_variables_and_connections(env: dict[str, str]) -> None:
    """A Variable and a Connection in this DB, for parse-time lookups through the manager."""
    code = (
        "from airflow.models import Variable, Connection\n"
        "from airflow.utils.session import create_session\n"
        "Variable.set('zygote_found', 'present')\n"
        "with create_session() as s:\n"
        "    s.add(Connection(conn_id='zygote_conn', conn_type='http', host='example'))\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, timeout=120)


def _rows(db: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute(query).fetchall(), key=repr)


def serialized_dags(db: Path) -> dict[str, Any]:
    result = {}
    for dag_id, data, compressed, dag_hash in _rows(
        db, "select dag_id, data, data_compressed, dag_hash from serialized_dag"
    ):
        payload = json.loads(zlib.decompress(compressed)) if compressed else json.loads(data)
        result[dag_id] = (dag_hash, payload)
    return result


def import_errors(db: Path) -> list[tuple[Any, ...]]:
    return _rows(db, "select filename, bundle_name, stacktrace from import_error")


def dag_warnings(db: Path) -> list[tuple[Any, ...]]:
    return _rows(db, "select dag_id, warning_type, message from dag_warning")


def dag_rows(db: Path) -> list[tuple[Any, ...]]:
    return _rows(db, "select dag_id, relative_fileloc, bundle_name, is_stale from dag")


def dag_code(db: Path) -> list[tuple[Any, ...]]:
    return _rows(db, "select dag_id, fileloc, source_code_hash from dag_code")


def parse_stats(db: Path) -> dict[str, tuple[int, int]]:
    """File -> (DAGs, import errors): the per-file counts the manager's DagFileStat holds."""
    stats: dict[str, tuple[int, int]] = {}
    for fileloc, count in _rows(db, "select relative_fileloc, count(*) from dag group by relative_fileloc"):
        stats[fileloc] = (count, 0)
    for filename, count in _rows(db, "select filename, count(*) from import_error group by filename"):
        dags, _ = stats.get(filename, (0, 0))
        stats[filename] = (dags, count)
    return stats


def stop_processor(processor: subprocess.Popen[bytes]) -> None:
    """SIGTERM a dag-processor the test started (it ends its parses as stock does), SIGKILL after 60 s."""
    processor.send_signal(signal.SIGTERM)
    try:
        processor.wait(60)
    except subprocess.TimeoutExpired:
        processor.kill()
