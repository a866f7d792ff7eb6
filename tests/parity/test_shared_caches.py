"""With the forker's parse caches warmed (ADR 0007), a worker's results are a stock child's.

The zygote here warms its caches (the default) before it freezes its heap; each file is parsed by
Airflow's own ``DagFileProcessorProcess`` (a fork of this process, with cold plugin caches as a
fresh dag-processor has) and by a zygote worker, and everything a parse produces is compared:
serialized DAGs, import errors, warnings and the per-file log lines. The files are those that
would notice a pre-filled cache: a DAG on a timetable only a plugin registers (a plugins cache
filled in the forker would hide it), a DAG file that looks for the warm-up's leftovers (its module,
its source lines, its DAGs in the context stacks, filled plugin caches) and warns, and a copy of
the warm-up DAG file itself in the user's folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagfiles import write
from zygote_harness import ParseDriver, ZygoteProcess, module_zygote, serialized

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PLUGIN = """
from airflow.plugins_manager import AirflowPlugin
from zc_timetables import ZcTimetable  # the DAG folder is on sys.path when a parse loads plugins


class ZcTimetablePlugin(AirflowPlugin):
    name = "zc_timetable_plugin"
    timetables = [ZcTimetable]
"""

TIMETABLE = '''
from airflow.timetables.trigger import CronTriggerTimetable


class ZcTimetable(CronTriggerTimetable):
    """Serializable only while the plugin that lists it is registered."""
'''

CUSTOM_TIMETABLE = """# airflow DAG
import datetime
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator
from zc_timetables import ZcTimetable

with DAG("zc_custom_timetable", schedule=ZcTimetable("0 3 * * *", timezone="UTC"),
         start_date=datetime.datetime(2024, 1, 1)):
    EmptyOperator(task_id="only")
"""

OBSERVER = """# airflow DAG
import datetime, linecache, sys, warnings
from airflow import plugins_manager
from airflow.sdk import DAG
from airflow.sdk.definitions._internal import contextmanager as contexts
from airflow.serialization import serialized_objects
from airflow.providers.standard.operators.bash import BashOperator

seen = {
    "warm_module": "airflow_zygote_warm_caches_dag" in sys.modules,
    "warm_lines": sorted(name for name in linecache.cache if "warmup_dag" in name),
    "dag_stack": len(contexts.DagContext._context),
    "group_stack": len(contexts.TaskGroupContext._context),
    "foreign_dags": sorted(dag.dag_id for dag, mod in contexts.DagContext.autoregistered_dags
                           if mod is not sys.modules.get(__name__)),
    "plugins_loaded": plugins_manager._get_plugins.cache_info().currsize,
    "timetable_plugins": plugins_manager.get_timetables_plugins.cache_info().currsize,
    "has_kubernetes": serialized_objects._has_kubernetes.cache_info().currsize,
}
warnings.warn("zc observer warns once", UserWarning)
with DAG("zc_observer", schedule="@daily", start_date=datetime.datetime(2024, 1, 1),
         doc_md=repr(sorted(seen.items()))):
    BashOperator(task_id="templated", bash_command="echo {{ ds }}")
"""


@pytest.fixture(scope="module")
def plugins_folder() -> Iterator[Path]:
    """The session's plugins folder with a timetable plugin, before the zygote and the client start
    (both sides compare the folder's contents in the handshake); this process's plugin caches are
    cleared so the stock child loads plugins as a fresh dag-processor's child does."""
    from airflow import plugins_manager, settings

    folder = Path(settings.PLUGINS_FOLDER or "")
    folder.mkdir(parents=True, exist_ok=True)
    plugin = write(folder, "zc_timetable_plugin.py", PLUGIN)
    _clear_plugin_caches(plugins_manager)
    try:
        yield folder
    finally:
        plugin.unlink()
        shutil.rmtree(folder / "__pycache__", ignore_errors=True)
        _clear_plugin_caches(plugins_manager)


def _clear_plugin_caches(plugins_manager: Any) -> None:
    for value in vars(plugins_manager).values():
        if callable(getattr(value, "cache_clear", None)):
            value.cache_clear()


@pytest.fixture(scope="module")
def zygote(plugins_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZygoteProcess]:
    """This module's own zygote, started after its plugins folder exists (the shared fixture's
    name, so ``connection`` uses it)."""
    yield from module_zygote(tmp_path_factory)


def _lines(log_text: str) -> list[dict[str, Any]]:
    """Per-file log lines without their timestamps."""
    return [{k: v for k, v in json.loads(line).items() if k != "timestamp"} for line in log_text.splitlines()]


def _comparable(outcome: Any) -> dict[str, Any]:
    result = outcome.result
    return {
        "exit_code": outcome.exit_code,
        "dags": serialized(result),
        "import_errors": result.import_errors,
        "warnings": result.warnings,
        "log": _lines(outcome.log_text),
    }


def test_files_that_would_notice_warm_caches_parse_as_in_stock(
    zygote: ZygoteProcess, dags: Path, driver: ParseDriver, connection: Any
) -> None:
    from zygote.forker.warmup import WARMUP_DAG

    [warmed] = zygote.events("forker.caches_warmed")
    assert warmed["dags"] == 3 and warmed["error"] == "" and warmed["reset"] == [], warmed
    write(dags, "zc_timetables.py", TIMETABLE)
    paths = {
        "custom_timetable": write(dags, "zc_custom_timetable.py", CUSTOM_TIMETABLE),
        "observer": write(dags, "zc_observer.py", OBSERVER),
        "warmup_copy": write(dags, "warmup_dag.py", "# airflow DAG\n" + WARMUP_DAG.read_text()),
    }
    started = {
        name: (driver.start_stock(path, dags), driver.start_zygote(connection, path, dags))
        for name, path in paths.items()
    }
    for name, (stock_proc, zygote_proc) in started.items():
        stock = _comparable(driver.finish(stock_proc, timeout=120))
        ours = _comparable(driver.finish(zygote_proc, timeout=120))
        assert stock["dags"] and not stock["import_errors"], (name, stock["import_errors"])
        assert ours == stock, name
    observed = serialized(driver.finish(driver.start_zygote(connection, paths["observer"], dags)).result)
    doc = observed["zc_observer"]["dag"]["doc_md"]
    assert "('warm_module', False)" in doc and "('plugins_loaded', 0)" in doc and "('dag_stack', 0)" in doc, doc
