"""On DAGs built from Airflow's providers, ``airflow zygote dag-processor`` writes what ``airflow dag-processor`` writes.

The corpus (``tests/corpora/providers``) imports boto3, google-cloud-*, kubernetes, pandas and pyarrow at
parse time and holds import errors of every kind: raised in the DAG file, in a helper module, two imports
down, ``ModuleNotFoundError`` (a missing provider and a missing library), and inside provider and SDK code.
Both sides run ``-n 1`` over a copy of it, each against its own copy of a migrated SQLite DB.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from client.e2e_support import dag_rows, dag_warnings, import_errors, parse_stats, serialized_dags
from zygote_harness import AIRFLOW, socket_endpoint

pytestmark = [pytest.mark.e2e, pytest.mark.corpus]

CORPUS = Path(__file__).parent / "providers"
SHARED_SETTINGS = {
    "PYTHONHASHSEED": "0",  # operators that build template_fields from a set: one order for both sides
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "2",
    "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "900",
    "AIRFLOW__ZYGOTE__WORKER_TIMEOUT": "900",
    # Nothing in the corpus may reach AWS or GCP: make any attempt fail fast instead of waiting.
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_GCE_CHECK": "True",
}
IMPORT_ERROR_FILES = {
    "errors_raise_in_dag.py",
    "errors_helper_raises.py",
    "errors_nested_import.py",
    "errors_missing_provider.py",
    "errors_missing_library.py",
    "errors_provider_bad_argument.py",
    "errors_provider_validation.py",
    "errors_sdk_bad_config.py",
    "errors_optional_feature.py",
}


def _home(tmp_path: Path, name: str, migrated_db: Path, dags: Path, base: dict[str, str]) -> dict[str, str]:
    home = tmp_path / name
    home.mkdir()
    shutil.copy(migrated_db, home / "airflow.db")
    return {
        **base,
        **SHARED_SETTINGS,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(tmp_path / "bundles"),
    }


def _run(argv: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("wb") as out:
        done = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=1200, check=False)
    assert done.returncode == 0, log.read_text(errors="replace")[-5000:]


@pytest.mark.timeout(1500)
def test_provider_corpus_rows_are_identical(
    tmp_path: Path, migrated_db: Path, airflow_env: dict[str, str], zygote_factory: Any
) -> None:
    dags = tmp_path / "providers"
    shutil.copytree(CORPUS, dags, ignore=shutil.ignore_patterns("__pycache__"))
    stock_env = _home(tmp_path, "stock", migrated_db, dags, airflow_env)
    zygote_env = _home(tmp_path, "zygote", migrated_db, dags, airflow_env)
    zygote_env["AIRFLOW__ZYGOTE__SOCKET"] = socket_endpoint()
    _run([AIRFLOW, "dag-processor", "-n", "1"], stock_env, tmp_path / "stock.log")
    zygote_factory(zygote_env)
    _run([AIRFLOW, "zygote", "dag-processor", "-n", "1"], zygote_env, tmp_path / "zygote-dp.log")
    stock, ours = Path(stock_env["AIRFLOW_HOME"]) / "airflow.db", Path(zygote_env["AIRFLOW_HOME"]) / "airflow.db"

    stock_errors = import_errors(stock)
    assert {Path(filename).name for filename, _, _ in stock_errors} == IMPORT_ERROR_FILES
    stock_dags = serialized_dags(stock)
    assert len(stock_dags) == len(list(CORPUS.glob("*.py"))) - len(IMPORT_ERROR_FILES)

    assert import_errors(ours) == stock_errors
    assert serialized_dags(ours) == stock_dags
    assert dag_warnings(ours) == dag_warnings(stock)
    assert dag_rows(ours) == dag_rows(stock)
    assert parse_stats(ours) == parse_stats(stock)
