"""Nothing of the zygote reaches what a parse produces: import errors and per-file logs as stock.

Side by side with Airflow's own ``DagFileProcessorProcess``: errors raised in the DAG file, in a
module it imports, in nested imports, a missing module, inside provider code; stock's
"Error when trying to pre-import module" warning; no zygote field on any log line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dagfiles import simple_dag, write
from zygote_harness import ParseDriver

pytestmark = pytest.mark.e2e

HELPERS = {
    "zt_fid_raises.py": "def explode():\n    raise RuntimeError('boom in a helper')\n\n\nexplode()\n",
    "zt_fid_outer.py": "import zt_fid_raises\n",
    "zt_fid_missing.py": "import zt_fid_not_installed\n",
}
DAG_FILES = {
    "in_dag_file.py": "# airflow DAG\nraise ValueError('boom in the DAG file')\n",
    "imported_module.py": "# airflow DAG\nimport zt_fid_raises\n",
    "nested_imports.py": "# airflow DAG\nimport zt_fid_outer\n",
    "module_not_found.py": "# airflow DAG\nimport zt_fid_not_installed_either\n",
    "nested_not_found.py": "# airflow DAG\nimport zt_fid_missing\n",
    "provider_code.py": "# airflow DAG\nfrom airflow.providers.standard.operators.bash import BashOperator\n"
    "BashOperator(task_id='no_command')\n",
    "pre_import_warning.py": simple_dag("pre_import_warning") + "from airflow.providers.zt_not_a_provider import x\n",
}


@pytest.fixture
def corpus(dags: Path) -> list[Path]:
    for name, text in HELPERS.items():
        write(dags, name, text)  # the DAG folder is on sys.path in workers and stock children alike
    return [write(dags, name, text) for name, text in DAG_FILES.items()]


def _lines(log_text: str) -> list[dict[str, Any]]:
    """Per-file log lines without what differs between any two runs (time, pid)."""
    lines = []
    for line in log_text.splitlines():
        event = json.loads(line)
        lines.append({key: value for key, value in event.items() if key not in ("timestamp",)})
    return lines


def test_import_errors_and_logs_equal_stock(
    corpus: list[Path], dags: Path, driver: ParseDriver, connection: Any
) -> None:
    for path in corpus:
        stock = driver.finish(driver.start_stock(path, dags))
        ours = driver.finish(driver.start_zygote(connection, path, dags))
        assert ours.exit_code == stock.exit_code == 0
        assert ours.result.import_errors == stock.result.import_errors, path.name
        assert _lines(ours.log_text) == _lines(stock.log_text), path.name
        assert '"component"' not in ours.log_text and "zygote/" not in ours.log_text
    errors = driver.finish(driver.start_zygote(connection, dags / "nested_imports.py", dags)).result.import_errors
    assert "boom in a helper" in next(iter(errors.values()))


def test_pre_import_warning_reaches_the_per_file_log(dags: Path, driver: ParseDriver, connection: Any) -> None:
    path = write(dags, "warns.py", DAG_FILES["pre_import_warning.py"])
    ours = driver.finish(driver.start_zygote(connection, path, dags))
    [warning] = [line for line in _lines(ours.log_text) if "Error when trying to pre-import module" in line["event"]]
    assert "'airflow.providers.zt_not_a_provider'" in warning["event"]
    assert warning["level"] == "warning"
