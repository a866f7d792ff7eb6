"""Two containers, two configurations: the zygote's workers parse as the dag-processor's own children.

The dag-processor side and the zygote side get different environments and different
``airflow.cfg`` files, as two containers of one pod would. Settings that only the dag-processor
has (an environment variable a DAG reads, ``AIRFLOW_VAR_*``, ``AIRFLOW_CONN_*``, ``[scheduler]
create_cron_data_intervals`` in its ``airflow.cfg``, ``catchup_by_default`` in its environment, a
``PYTHONPATH`` entry, its cwd, ``[sensors] default_timeout``, ``[core] max_active_runs_per_dag``) must shape the DAGs exactly as in a stock ``airflow dag-processor``
started with the dag-processor's environment; what only the zygote has must not.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "client"))  # the stock-vs-zygote helpers live there

from e2e_support import dag_code, dag_rows, dag_warnings, import_errors, serialized_dags
from test_client_e2e import SHARED_SETTINGS
from zygote_harness import AIRFLOW, socket_endpoint

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

HEADER = "from __future__ import annotations\nimport datetime, os\nfrom airflow.sdk import DAG\n"
START = "start_date=datetime.datetime(2024, 1, 1)"

CORPUS = {
    "env_named.py": HEADER + f"with DAG('team_' + os.environ['TEAM_NAME'], schedule=None, {START}):\n    pass\n",
    "zygote_env_only.py": HEADER + f"with DAG(os.environ['ZYGOTE_SIDE_ONLY'], schedule=None, {START}):\n    pass\n",
    "variable_from_env.py": HEADER
    + "from airflow.sdk import Variable\n"
    + f"with DAG('var_' + Variable.get('parity_var'), schedule=None, {START}):\n    pass\n",
    "connection_from_env.py": HEADER
    + "from airflow.sdk import BaseHook\n"
    + f"with DAG('conn_' + BaseHook.get_connection('parity_conn').host, schedule=None, {START}):\n    pass\n",
    "cron_timetable.py": HEADER + f"with DAG('cron_dag', schedule='0 3 * * *', {START}):\n    pass\n",
    "catchup_default.py": HEADER + f"with DAG('catchup_dag', schedule='@daily', {START}):\n    pass\n",
    "python_path.py": HEADER + f"import parity_lib\nwith DAG(parity_lib.NAME, schedule=None, {START}):\n    pass\n",
    "sensor_defaults.py": HEADER
    + "from airflow.providers.standard.sensors.python import PythonSensor\n"
    + f"with DAG('sensor_dag', schedule=None, {START}):\n"
    + "    PythonSensor(task_id='poke', python_callable=lambda: True)\n",
    "cwd_named.py": HEADER + f"with DAG('cwd_' + os.path.basename(os.getcwd()), schedule=None, {START}):\n    pass\n",
}

DAG_PROCESSOR_CFG = "[scheduler]\ncreate_cron_data_intervals = True\n[core]\nmax_active_runs_per_dag = 3\n"
ZYGOTE_CFG = (
    "[scheduler]\ncreate_cron_data_intervals = False\ncatchup_by_default = False\n"
    "[core]\nmax_active_runs_per_dag = 16\n[sensors]\ndefault_timeout = 60\n"
)


def _home(root: Path, name: str, cfg: str, migrated_db: Path) -> Path:
    home = root / name
    home.mkdir()
    (home / "airflow.cfg").write_text(cfg)
    shutil.copy(migrated_db, home / "airflow.db")
    return home


def _dag_processor_env(base: dict[str, str], home: Path, shared: dict[str, str], lib: Path) -> dict[str, str]:
    """What the dag-processor container has: its own home and cfg, and settings the zygote lacks."""
    return {
        **base,
        **shared,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "TEAM_NAME": "data_platform",
        "AIRFLOW_VAR_PARITY_VAR": "from_dag_processor",
        "AIRFLOW_CONN_PARITY_CONN": "http://dp-host",
        "AIRFLOW__SCHEDULER__CATCHUP_BY_DEFAULT": "True",
        "AIRFLOW__SENSORS__DEFAULT_TIMEOUT": "4321",
        "PYTHONPATH": str(lib),
    }


def _run(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
    with log.open("wb") as out:
        done = subprocess.run(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=400, check=False)
    assert done.returncode == 0, log.read_text(errors="replace")[-5000:]


@pytest.fixture
def two_containers(
    tmp_path: Path, migrated_db: Path, airflow_env: dict[str, str], zygote_factory: Any
) -> dict[str, Any]:
    dags, lib, cwd = tmp_path / "corpus", tmp_path / "dp_lib", tmp_path / "dp_cwd"
    for folder in (dags, lib, cwd):
        folder.mkdir()
    for name, text in CORPUS.items():
        (dags / name).write_text(text)
    (lib / "parity_lib.py").write_text("NAME = 'from_python_path'\n")
    shared = {
        **SHARED_SETTINGS,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(tmp_path / "bundles"),
        "AIRFLOW__ZYGOTE__SOCKET": socket_endpoint(),
    }
    base = {k: v for k, v in airflow_env.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_HOME"))}
    base["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    stock_env = _dag_processor_env(base, _home(tmp_path, "stock", DAG_PROCESSOR_CFG, migrated_db), shared, lib)
    ours_env = _dag_processor_env(base, _home(tmp_path, "dp", DAG_PROCESSOR_CFG, migrated_db), shared, lib)
    zygote_home = _home(tmp_path, "zygote", ZYGOTE_CFG, migrated_db)
    zygote_env = {**base, **shared, "AIRFLOW_HOME": str(zygote_home), "ZYGOTE_SIDE_ONLY": "zygote_leaked"}

    _run([AIRFLOW, "dag-processor", "-n", "1"], stock_env, cwd, tmp_path / "stock.log")
    zygote = zygote_factory(zygote_env)
    _run([AIRFLOW, "zygote", "dag-processor", "-n", "1"], ours_env, cwd, tmp_path / "zygote-dp.log")
    return {
        "stock": Path(stock_env["AIRFLOW_HOME"]) / "airflow.db",
        "ours": Path(ours_env["AIRFLOW_HOME"]) / "airflow.db",
        "zygote": zygote,
        "dp_log": (tmp_path / "zygote-dp.log").read_text(errors="replace"),
    }


def test_rows_match_a_stock_dag_processor_with_the_dag_processors_environment(two_containers: dict[str, Any]) -> None:
    stock, ours = two_containers["stock"], two_containers["ours"]
    stock_dags = serialized_dags(stock)
    expected = {"team_data_platform", "var_from_dag_processor", "conn_dp-host", "from_python_path", "cwd_dp_cwd"}
    assert expected | {"cron_dag", "catchup_dag"} <= set(stock_dags), "the corpus must exercise every case"
    assert stock_dags["catchup_dag"][1]["dag"].get("catchup") is True
    assert "CronDataIntervalTimetable" in str(stock_dags["cron_dag"][1]["dag"]["timetable"])
    assert stock_dags["cron_dag"][1]["dag"].get("max_active_runs") == 3
    assert {Path(f).name for f, _, _ in import_errors(stock)} == {"zygote_env_only.py"}

    assert serialized_dags(ours) == stock_dags
    assert import_errors(ours) == import_errors(stock)
    assert dag_warnings(ours) == dag_warnings(stock)
    assert dag_rows(ours) == dag_rows(stock)
    assert dag_code(ours) == dag_code(stock)

    finished = two_containers["zygote"].events("request.finished")
    assert {Path(event["file"]).name for event in finished} == set(CORPUS), "every file parsed in the zygote"
    assert "zygote.unavailable" not in two_containers["dp_log"]
    zygote_log = two_containers["zygote"].log_text()
    assert not [value for value in ("from_dag_processor", "http://dp-host") if value in zygote_log]
