"""The forker's cache warm-up fills the parse caches and leaves nothing else a parse could see.

Each case runs in a fresh interpreter that starts as a forker does (``import_parse_path``, then
the modules its warm-up child learned), so the test process's own Airflow state is untouched.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(300)

SCRIPT = textwrap.dedent(
    """
    import importlib, json, linecache, os, sys, warnings
    from pathlib import Path
    from zygote.forker.warmup import import_parse_path, run_warmup
    import_parse_path()
    for name in run_warmup(120):
        try:
            importlib.import_module(name)
        except Exception:
            pass
    from airflow import plugins_manager
    from airflow.sdk.definitions._internal import contextmanager as contexts
    from airflow.serialization.serialized_objects import DagSerialization, OperatorSerialization
    from zygote.forker import warm_caches

    def visible():
        return {
            "sys_path": list(sys.path),
            "dag_stack": len(contexts.DagContext._context),
            "group_stack": len(contexts.TaskGroupContext._context),
            "registered": len(contexts.DagContext.autoregistered_dags),
            "autoregister_module": contexts.DagContext.current_autoregister_module_name,
            "module": warm_caches.MODULE_NAME in sys.modules,
            "linecache": sorted(f for f in linecache.cache if "warm" in f),
            "session_caches": warm_caches._session_cache_sizes(),
            "env": dict(os.environ),
            "warning_filters": len(warnings.filters),
        }

    def serialization_caches():
        return {
            "schema_defaults": DagSerialization.get_schema_defaults.cache_info().currsize,
            "dag_optional": DagSerialization.get_dag_optional_fields_from_schema.cache_info().currsize,
            "operator_optional": OperatorSerialization.get_operator_optional_fields_from_schema.cache_info().currsize,
        }

    serialize = warm_caches._serialize_all
    def touching(dags, path):  # a warm-up that reached the plugins manager
        plugins_manager.get_timetables_plugins()
        return serialize(dags, path)

    outcomes = {}
    for mode, dag_file in json.loads(sys.argv[1]):  # in order: the first one meets cold caches
        warm_caches._serialize_all = touching if mode == "touch_plugins" else serialize
        before, caches_before = visible(), serialization_caches()
        report = warm_caches.warm_parse_caches(Path(dag_file))
        outcomes[mode] = {
            "report": vars(report),
            "before": before,
            "after": visible(),
            "caches_before": caches_before,
            "caches_after": serialization_caches(),
        }
    print(json.dumps(outcomes))
    """
)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One interpreter for all cases (Airflow's start-up costs seconds): shipped, broken, touching."""
    from zygote.forker.warmup import WARMUP_DAG

    broken = tmp_path_factory.mktemp("warm") / "broken_warmup.py"
    broken.write_text(
        "import datetime\n"
        "from airflow.sdk import DAG, TaskGroup\n"
        "with DAG('zygote_broken_warmup', schedule=None, start_date=datetime.datetime(2024, 1, 1)):\n"
        "    with TaskGroup('group'):\n"
        "        raise RuntimeError('warm-up broke mid-DAG')\n"
    )
    cases = [("shipped", str(WARMUP_DAG)), ("broken", str(broken)), ("touch_plugins", str(WARMUP_DAG))]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
        cwd=Path(__file__).parent.parent.parent,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture
def shipped(outcomes: dict[str, Any]) -> dict[str, Any]:
    return outcomes["shipped"]  # type: ignore[no-any-return]


def test_the_shipped_dags_fill_the_serialization_caches(shipped: dict[str, Any]) -> None:
    report = shipped["report"]
    assert report["error"] == "" and report["dags"] == 3, report
    assert set(shipped["caches_before"].values()) == {0}
    assert 0 not in shipped["caches_after"].values(), shipped["caches_after"]


def test_what_a_parse_could_see_is_left_as_it_was(shipped: dict[str, Any]) -> None:
    assert shipped["after"] == shipped["before"]
    assert shipped["report"]["reset"] == []


def test_it_imports_nothing_the_warm_up_child_did_not_learn(shipped: dict[str, Any]) -> None:
    assert shipped["report"]["new_modules"] == []


def test_a_failure_inside_a_dag_block_is_reported_and_leaves_no_current_dag(outcomes: dict[str, Any]) -> None:
    broken = outcomes["broken"]
    assert "RuntimeError: warm-up broke mid-DAG" in broken["report"]["error"]
    assert broken["after"] == broken["before"]


def test_a_session_cache_the_warm_up_filled_is_cleared(outcomes: dict[str, Any]) -> None:
    touched = outcomes["touch_plugins"]
    assert "airflow.plugins_manager.get_timetables_plugins" in touched["report"]["reset"]
    assert "airflow.plugins_manager._get_plugins" in touched["report"]["reset"]
    assert touched["report"]["error"] == ""
    assert touched["after"] == touched["before"]
    assert set(touched["after"]["session_caches"].values()) == {0}
