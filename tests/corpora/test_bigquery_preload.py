"""The BigQuery DAG parses in a zygote worker under Airflow's default 30 s import timeout, as in stock.

Importing ``airflow.providers.google.cloud.hooks.bigquery`` pulls in google-cloud-bigquery, pandas
and pyarrow (20+ s on a loaded 2-core machine). Stock imports it in the manager before forking, so
its child only runs the DAG's own code; a zygote worker has it only when the forker preloaded it,
and the forker can only preload what leaves no thread behind: pyarrow's bundled jemalloc starts a
purge thread at import unless ``JE_ARROW_MALLOC_CONF`` says ``background_thread:false``.

With those preloads the forker holds thousands of modules more than a stock child: ``inspect.stack()``
in a worker must still find inspect's module map filled (the forker fills it before it freezes).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from dagfiles import STACK_PROBE, write
from zygote_harness import ParseDriver, ZygoteProcess, socket_endpoint, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.corpus, pytest.mark.timeout(900)]

CORPUS = Path(__file__).parent / "providers"
HEAVY = ("pyarrow", "pandas", "google.cloud.bigquery", "airflow.providers.google.cloud.hooks.bigquery")


def _preload(zygote: ZygoteProcess) -> dict[str, Any]:
    preload: dict[str, Any] = zygote.status(timeout=30.0)["preload"]
    return preload


def test_bigquery_dag_parses_within_the_default_import_timeout(
    tmp_path: Path, dags: Path, driver: ParseDriver, zygote_factory: Any, inproc_env: dict[str, str]
) -> None:
    from zygote.client.connection import ZygoteConnection
    from zygote.client.ledger import Ledger

    shutil.copytree(CORPUS / "corp_helpers", dags / "corp_helpers")
    path = dags / "google_bigquery_queries.py"
    shutil.copy(CORPUS / path.name, path)
    env = {
        **inproc_env,
        "AIRFLOW__ZYGOTE__SOCKET": socket_endpoint(),
        "AIRFLOW__ZYGOTE__APPROVED_MODULES": "pyarrow.*, pandas.*, google.*",
    }
    zygote = zygote_factory(env)
    connection = ZygoteConnection(zygote.settings, Ledger())
    try:
        started = time.monotonic()
        first = driver.finish(driver.start_zygote(connection, path, dags, timeout=300), timeout=300)
        first_s = time.monotonic() - started
        assert first.result.import_errors == {}, first.result.import_errors
        wait_for(
            lambda: _preload(zygote).get(HEAVY[-1], {}).get("state") in ("loaded", "rejected"),
            600,
            "preload settled",
            interval=1.0,
        )
        preload = _preload(zygote)
        print(json.dumps({name: preload.get(name) for name in HEAVY}, indent=1))
        started = time.monotonic()
        second = driver.finish(driver.start_zygote(connection, path, dags, timeout=300), timeout=300)
        second_s = time.monotonic() - started
        assert second.result.import_errors == {}
        print({"first_s": first_s, "second_s": second_s})
        for name in HEAVY:
            assert preload[name]["state"] == "loaded", (name, preload[name])
        probe = write(dags, "stack_probe.py", STACK_PROBE)
        driver.finish(driver.start_stock(probe, dags))
        driver.finish(driver.start_zygote(connection, probe, dags, timeout=300), timeout=300)
        stock, ours = (json.loads(line) for line in probe.with_suffix(".jsonl").read_text().splitlines())
        print({"inspect.stack": {"stock": stock, "zygote": ours}})
        assert ours["mapped"] >= 0.9 * ours["files"], ours
    finally:
        connection.close()
