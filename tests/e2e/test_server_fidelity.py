"""Results through the zygote equal what Airflow's own DagFileProcessorProcess produces."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import airflow.example_dags
import pytest
from dagfiles import simple_dag, write
from zygote_harness import ParseDriver, serialized

pytestmark = pytest.mark.e2e

EXAMPLES = Path(airflow.example_dags.__file__).parent
EXAMPLE_FILES = [
    "example_branch_labels.py",
    "example_custom_weight.py",
    "example_complex.py",
    "example_dynamic_task_mapping.py",
    "example_params_trigger_ui.py",
    "example_task_group.py",
    "example_xcom.py",
    "tutorial_taskflow_api.py",
    "example_asset_alias.py",
    "example_setup_teardown.py",
    "example_latest_only_with_trigger.py",
    "example_nested_branch_dag.py",
]
SAFE_MODE_MARKER = "# an airflow DAG file\n"  # dag_discovery_safe_mode skips files without these words
EDGE_CASES = {
    "syntax_error.py": SAFE_MODE_MARKER + "this is not python(\n",
    "import_error.py": SAFE_MODE_MARKER + "import module_that_does_not_exist\n",
    "raises.py": SAFE_MODE_MARKER + "raise RuntimeError('boom at parse time')\n",
    "empty.py": "",
    "two_dags.py": simple_dag("first") + "\n" + simple_dag("second").split("\n", 3)[3],
}


@pytest.fixture
def corpus(dags: Path) -> list[Path]:
    files = [Path(shutil.copy(EXAMPLES / name, dags / name)) for name in EXAMPLE_FILES]
    files += [write(dags, name, text) for name, text in EDGE_CASES.items()]
    return files


def _compare(stock: Any, ours: Any) -> None:
    assert ours.exit_code == stock.exit_code
    assert serialized(ours.result) == serialized(stock.result)
    if stock.result is not None:
        assert ours.result.import_errors == stock.result.import_errors
        assert ours.result.warnings == stock.result.warnings
        assert ours.result.fileloc == stock.result.fileloc


def test_results_equal_stock(corpus: list[Path], dags: Path, driver: ParseDriver, connection: Any) -> None:
    dags_seen, errors_seen = 0, 0
    for path in corpus:
        stock = driver.finish(driver.start_stock(path, dags))
        ours = driver.finish(driver.start_zygote(connection, path, dags))
        _compare(stock, ours)
        dags_seen += len(serialized(ours.result))
        errors_seen += len(ours.result.import_errors) if ours.result else 0
    assert dags_seen >= len(EXAMPLE_FILES)  # the comparison is not vacuous
    assert errors_seen >= 3
    assert connection.ledger.counts() == {"exited": len(corpus)}
    assert not connection.ledger.open_ids


def test_results_carry_errors_verbatim(dags: Path, driver: ParseDriver, connection: Any) -> None:
    path = write(dags, "broken.py", EDGE_CASES["syntax_error.py"])
    ours = driver.finish(driver.start_zygote(connection, path, dags))
    stock = driver.finish(driver.start_stock(path, dags))
    assert ours.result.import_errors
    assert ours.result.import_errors == stock.result.import_errors
