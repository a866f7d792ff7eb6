"""``make run`` (``python -m zygote.demo``) sets everything up and parses Airflow's example DAGs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(660)]  # the demo itself may take up to 600 s


def test_demo_once_parses_the_example_dags_through_the_zygote(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = subprocess.run(
        [sys.executable, "-m", "zygote.demo", "--once", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"DAGs found: (\d+)", done.stdout)
    assert found and int(found.group(1)) > 50, done.stdout
    assert "healthy:   True" in done.stdout
    log = (home / "zygote.log").read_text()
    assert log.count('"event": "request.finished"') >= 50
    assert '"outcome": "killed"' not in log
