"""``[secrets] use_cache = True``: DAG files reading a Variable at top level keep parsing through the zygote.

Airflow's secrets cache is a multiprocessing manager the forker starts (a child of the forker on
purpose); parse-time ``Variable.get`` in every later worker talks to it. If the forker kills it as a
worker's leftover, every later parse of such a file fails with ``ConnectionRefusedError``.
"""

from __future__ import annotations

from typing import Any

import pytest
from processes import REFUSALS, requests
from zygote_harness import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(420)]

FILES = 6
PARSES = 30
READS_VARIABLE = "from airflow.sdk import Variable\nassert Variable.get('faults_cached') == 'present'\n"


def test_parse_time_variable_reads_with_secrets_cache(
    make_home: Any, zygote_factory: Any, start_processor: Any
) -> None:
    home = make_home("side", AIRFLOW__SECRETS__USE_CACHE="True")
    home.python("from airflow.models import Variable\nVariable.set('faults_cached', 'present')\n")
    home.write_marker_dags(FILES, body=READS_VARIABLE)
    zygote = zygote_factory(home.env)
    processor = start_processor(home)
    errors_seen: list[Any] = []

    def parsed_enough() -> bool:
        errors_seen.extend(home.import_errors())
        return bool(errors_seen) or processor.remote_parses() >= PARSES

    wait_for(parsed_enough, 240, f"{PARSES} parses through the zygote or an import error", interval=0.5)
    assert processor.local_parses() == 0
    assert not errors_seen, errors_seen[0][1][-2000:]
    assert len(home.active_dags()) == FILES
    counts = requests(zygote)
    assert not REFUSALS & set(counts), counts
