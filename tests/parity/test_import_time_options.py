"""The handshake checks every option the forker consumes at import time, derived by recording reads.

``record_reads.py`` runs the forker's start-up and then parses a broad corpus in a forked child,
recording every ``conf.get``. An option read at import time (in the forker, or in a library
module's body, which the forker may preload) cannot follow the dag-processor's configuration into
a worker, so it must be in ``zygote.compat.IMPORT_TIME_OPTIONS`` (compared at handshake) or in
``EXEMPT`` with a reason.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import airflow.example_dags
import pytest

from zygote.compat import EXEMPT, IMPORT_TIME_OPTIONS, READ_WITH_PROVIDER, providers

pytestmark = pytest.mark.timeout(300)

RECORDER = Path(__file__).parent / "record_reads.py"
HEADER = "from __future__ import annotations\nimport datetime\nfrom airflow.sdk import DAG\n"
START = "start_date=datetime.datetime(2024, 1, 1)"

CORPUS = {
    "cron_timetable.py": HEADER + f"with DAG('cron_dag', schedule='0 3 * * *', {START}):\n    pass\n",
    "catchup_default.py": HEADER + f"with DAG('catchup_dag', schedule='@daily', {START}):\n    pass\n",
    "sensors.py": HEADER
    + "from airflow.providers.standard.sensors.python import PythonSensor\n"
    + "from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor\n"
    + f"with DAG('sensor_dag', schedule=None, {START}):\n"
    + "    PythonSensor(task_id='poke', python_callable=lambda: True)\n"
    + "    TimeDeltaSensor(task_id='wait', delta=datetime.timedelta(minutes=1))\n",
    "email_defaults.py": HEADER
    + "from airflow.providers.standard.operators.empty import EmptyOperator\n"
    + "from airflow.providers.smtp.operators.smtp import EmailOperator\n"
    + f"with DAG('email_dag', schedule=None, {START}, default_args={{'email': ['ops@example.com']}}):\n"
    + "    EmptyOperator(task_id='quiet')\n"
    + "    EmailOperator(task_id='mail', to='a@example.com', subject='s', html_content='c')\n",
    "sql_provider.py": HEADER
    + "from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator\n"
    + f"with DAG('sql_dag', schedule=None, {START}):\n"
    + "    SQLExecuteQueryOperator(task_id='q', conn_id='nope', sql='select 1')\n",
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    folder = tmp_path_factory.mktemp("corpus") / "dags"
    shutil.copytree(Path(airflow.example_dags.__file__).parent, folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name, text in CORPUS.items():
        (folder / name).write_text(text)
    output = folder.parent / "reads.json"
    done = subprocess.run(
        [sys.executable, str(RECORDER), str(folder), str(output)],
        capture_output=True,
        text=True,
        timeout=240,
        env=os.environ.copy(),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {phase: set(names) for phase, names in json.loads(output.read_text()).items()}


def _exempt(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in EXEMPT)


def test_the_recorder_sees_parse_time_reads(recorded: dict[str, set[str]]) -> None:
    """Without this the next test could pass on a recorder that records nothing."""
    parse_time = {"scheduler.create_cron_data_intervals", "scheduler.catchup_by_default", "sensors.default_timeout"}
    assert parse_time <= recorded["worker_parse"]
    assert {"email.default_email_on_failure", "operators.default_owner"} <= recorded["forker"]


def test_every_option_read_at_import_time_is_checked_or_exempt(recorded: dict[str, set[str]]) -> None:
    import_time = recorded["forker"] | recorded["worker_import"]
    unchecked = sorted(name for name in import_time if name not in IMPORT_TIME_OPTIONS and not _exempt(name))
    assert unchecked == [], (
        "options the forker consumes at import time that the handshake does not compare: add each to "
        f"zygote.compat.IMPORT_TIME_OPTIONS (or to EXEMPT with a reason): {unchecked}"
    )


def test_every_checked_option_is_read_at_import_time(recorded: dict[str, set[str]]) -> None:
    """A stale entry would refuse dag-processors over an option that no longer matters."""
    import_time = recorded["forker"] | recorded["worker_import"]
    installed = providers()
    absent = {name for name, dist in READ_WITH_PROVIDER.items() if dist not in installed}
    assert sorted(set(IMPORT_TIME_OPTIONS) - import_time - absent) == []


def test_parse_time_options_are_left_to_the_worker() -> None:
    assert not {"scheduler.create_cron_data_intervals", "scheduler.catchup_by_default"} & set(IMPORT_TIME_OPTIONS)
    assert not [name for name in IMPORT_TIME_OPTIONS if _exempt(name)]
