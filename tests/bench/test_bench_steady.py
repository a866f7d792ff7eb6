"""A steady bench round gives stock's manager what a long-running dag-processor keeps between passes.

Real Airflow in a fresh interpreter: the stock side's manager is built as the bench builds it, then
``carry_over`` must leave the modules a DAG file names in ``sys.modules`` without charging their
import to the file (stock's per-file parse time adds only what the timed pre-import measured).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, sys
from pathlib import Path
from zygote.bench.sides import StockRunner

runner = StockRunner(Path(sys.argv[1]) / "children")
runner.make_manager()
name = "airflow.providers.standard.sensors.bash"
before = name in sys.modules
runner.carry_over(Path(sys.argv[1]) / "dags")
print(json.dumps({"before": before, "after": name in sys.modules, "charged": runner.pre_import_s}))
"""


def test_carry_over_imports_what_the_files_name_untimed(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "sensor.py").write_text("from airflow.providers.standard.sensors.bash import BashSensor\n")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)], check=False, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"before": False, "after": True, "charged": {}}
