"""``airflow zygote dag-processor`` writes exactly what ``airflow dag-processor`` writes.

Both run ``-n 1`` over the same DAG folder (Airflow's example DAGs plus the edge cases of issue 4),
each against its own copy of a migrated SQLite metadata DB.
"""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    build_dag_folder,
    dag_code,
    dag_rows,
    dag_warnings,
    import_errors,
    parse_stats,
    seed_variables_and_connections,
    serialized_dags,
)
from zygote_harness import AIRFLOW, socket_endpoint

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SHARED_SETTINGS = {
    # Some operators build template_fields from a set, so their order follows the hash seed: two
    # stock runs differ there too (dag_hash does not). One seed for both sides makes rows comparable.
    "PYTHONHASHSEED": "0",
    "AIRFLOW__DAG_PROCESSOR__DAG_VERSION_INFLATION_CHECK_LEVEL": "error",
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "4",
    "AIRFLOW__LOGGING__DAG_PROCESSOR_LOG_TARGET": "file",
    # The defaults (30 s per import, 50 s per parse) kill parses on a loaded 2-core CI machine and the
    # killed files then differ between the two runs; no row depends on these limits.
    "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
    "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "600",
}


def _home(tmp_path: Path, name: str, migrated_db: Path, dags: Path, base: dict[str, str]) -> dict[str, str]:
    home = tmp_path / name
    home.mkdir()
    shutil.copy(migrated_db, home / "airflow.db")
    env = {**base, **SHARED_SETTINGS}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(tmp_path / "bundles"),
        }
    )
    return env


def _run(argv: list[str], env: dict[str, str], log: Path) -> str:
    with log.open("wb") as out:
        done = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=600, check=False)
    text = log.read_text(errors="replace")
    assert done.returncode == 0, text[-5000:]
    return text


def _stock_side(env: dict[str, str], log: Path) -> str:
    seed_variables_and_connections(env)
    return _run([AIRFLOW, "dag-processor", "-n", "1"], env, log)


def _zygote_side(env: dict[str, str], log: Path, zygote_factory: Any) -> tuple[str, Any]:
    seed_variables_and_connections(env)
    zygote = zygote_factory(env)
    return _run([AIRFLOW, "zygote", "dag-processor", "-n", "1"], env, log), zygote


@pytest.fixture
def two_runs(tmp_path: Path, migrated_db: Path, airflow_env: dict[str, str], zygote_factory: Any) -> dict[str, Any]:
    """Both dag-processors at once: they share nothing but the read-only DAG folder, and each side's
    set-up (its seeded DB, the zygote's start) is on its own side, so neither waits for the other."""
    dags = tmp_path / "corpus"
    build_dag_folder(dags)
    stock_env = _home(tmp_path, "stock", migrated_db, dags, airflow_env)
    zygote_env = _home(tmp_path, "zygote", migrated_db, dags, airflow_env)
    zygote_env["AIRFLOW__ZYGOTE__SOCKET"] = socket_endpoint()
    with ThreadPoolExecutor(max_workers=2) as pool:
        stock = pool.submit(_stock_side, stock_env, tmp_path / "stock.log")
        ours = pool.submit(_zygote_side, zygote_env, tmp_path / "zygote-dp.log", zygote_factory)
        stock_log = stock.result()
        zygote_log, zygote = ours.result()
    return {
        "stock_db": Path(stock_env["AIRFLOW_HOME"]) / "airflow.db",
        "zygote_db": Path(zygote_env["AIRFLOW_HOME"]) / "airflow.db",
        "stock_log": stock_log,
        "zygote_log": zygote_log,
        "zygote": zygote,
    }


def test_zygote_dag_processor_writes_the_same_rows_as_stock(two_runs: dict[str, Any]) -> None:
    stock, ours = two_runs["stock_db"], two_runs["zygote_db"]
    stock_dags = serialized_dags(stock)
    assert len(stock_dags) > 50  # the comparison covers the example DAGs
    assert {"var_present", "conn_example", "from_helper", "zipped_one"} <= set(stock_dags)
    assert serialized_dags(ours) == stock_dags
    stock_errors = import_errors(stock)
    names = {Path(filename).name for filename, _, _ in stock_errors}
    assert {"variable_missing.py", "connection_missing.py", "syntax_error.py", "inflation.py"} <= names
    assert import_errors(ours) == stock_errors
    assert dag_warnings(ours) == dag_warnings(stock)
    assert dag_rows(ours) == dag_rows(stock)
    assert dag_code(ours) == dag_code(stock)
    assert parse_stats(ours) == parse_stats(stock)

    finished = two_runs["zygote"].events("request.finished")
    files = {Path(event["file"]).name for event in finished}
    assert {"variable_found.py", "sys_exit.py", "zipped_dags.zip", "uses_helper.py"} <= files
    assert all(event["outcome"] == "exited" for event in finished)
    assert "zygote.unavailable" not in two_runs["zygote_log"]
