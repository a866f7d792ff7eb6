"""``[secrets] use_cache = True``: DAG files reading a Variable at top level keep parsing through the zygote.

Airflow's secrets cache is a multiprocessing manager the forker starts (a child of the forker on
purpose); parse-time ``Variable.get`` in every later worker talks to it. If the forker kills it as a
worker's leftover, every later parse of such a file fails with ``ConnectionRefusedError``.

A dag-processor answers its first request from a parse child only after building Airflow's
in-process Execution API on its one thread ("a seriously weighty import", ``manager.py``): on a
loaded machine that took 35-55 s, stock and zygote alike, so the first ``Variable.get`` hit
``dagbag_import_timeout`` (30 s) in both. A warm-up file takes that first request; the files under
test are written once it was answered, so each of their parses reads the Variable from the cache
server the forker keeps.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from fault_home import marker_dag
from processes import DAG_FILE_PROCESSOR_TIMEOUT, REFUSALS, requests
from zygote_harness import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(600)]

FILES = 6
PARSES = 30
READS_VARIABLE = "from airflow.sdk import Variable\nassert Variable.get('faults_cached') == 'present'\n"
RECORDS_READ = "with open({path!r}, 'a') as _read:\n    _read.write('read\\n')\n"
WARM_UP = "warm.py"


def test_parse_time_variable_reads_with_secrets_cache(
    make_home: Any, zygote_factory: Any, start_processor: Any
) -> None:
    home = make_home("side", AIRFLOW__SECRETS__USE_CACHE="True")
    home.python("from airflow.models import Variable\nVariable.set('faults_cached', 'present')\n")
    answered = home.root / "answered.log"
    warm_up = home.dags / WARM_UP
    warm_up.write_text(marker_dag(home.marker, "warm", body=READS_VARIABLE + RECORDS_READ.format(path=str(answered))))
    zygote = zygote_factory(home.env)
    processor = start_processor(home)
    wait_for(answered.exists, 4 * DAG_FILE_PROCESSOR_TIMEOUT, "the first Variable request answered", interval=0.5)
    warm_up.unlink()
    since = time.time()
    names = home.write_marker_dags(FILES, body=READS_VARIABLE)
    errors_seen: list[tuple[str, str]] = []

    def remote_parses() -> int:
        return sum(1 for p in home.parses() if p.at >= since and p.file in names and p.ppid != processor.pid)

    def parsed_enough() -> bool:
        errors_seen.extend(e for e in home.import_errors() if WARM_UP not in e[0])
        return bool(errors_seen) or remote_parses() >= PARSES

    wait_for(parsed_enough, 240, f"{PARSES} parses through the zygote or an import error", interval=0.5)
    assert processor.local_parses() == 0
    assert not errors_seen, errors_seen[0][1][-2000:]
    assert {name[:-3] for name in names} <= home.active_dags()
    counts = requests(zygote)
    assert not REFUSALS & set(counts), counts
