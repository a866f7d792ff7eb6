"""``airflow zygote reload`` reaches the gateway: the new generation's ``ready.config`` sets its limits,
roots and fingerprint, and the new forker enforces the new worker limits (the zygote's ``airflow.cfg``
is edited between start and reload, as an operator would)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagfiles import simple_dag
from hostile_support import HostileClient, run_raw_parse
from zygote_harness import AIRFLOW, ZygoteProcess, socket_endpoint, spawn_message, wait_for

from protocol import Error, Exited, Signal, Started

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _config(base: str, max_workers: int, roots: list[Path], memory_limit_mib: int = 0) -> str:
    """``base`` with three options of its (generated) ``[zygote]`` section set."""
    joined = ", ".join(str(root) for root in roots)
    text = re.sub(r"(?m)^max_workers = .*$", f"max_workers = {max_workers}", base)
    text = re.sub(r"(?m)^worker_memory_limit = .*$", f"worker_memory_limit = {memory_limit_mib}", text)
    return re.sub(r"(?m)^allowed_roots = .*$", f"allowed_roots = {joined}", text)


@pytest.fixture
def config_file(tmp_path: Path, migrated_db: Path) -> Iterator[Path]:
    """A copy of the session's ``airflow.cfg`` (same fingerprint as this process) plus ``[zygote]``."""
    base = (Path(os.environ["AIRFLOW_HOME"]) / "airflow.cfg").read_text()
    assert _config(base, 1, []) != base, "the generated airflow.cfg has the [zygote] options"
    assert "worker_memory_limit = 64" in _config(base, 1, [], 64), "and worker_memory_limit"
    path = tmp_path / "airflow.cfg"
    path.write_text(_config(base, 1, [tmp_path / "old"]))
    yield path


def test_reload_applies_a_changed_max_workers_a_new_allowed_root_and_a_memory_limit(
    tmp_path: Path, config_file: Path
) -> None:
    base = (Path(os.environ["AIRFLOW_HOME"]) / "airflow.cfg").read_text()
    for name in ("old", "new"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "sleeper.py").write_text(simple_dag(f"reload_{name}") + "import time; time.sleep(120)\n")
    hog = "blob = b'x' * (512 << 20)  # written, so private memory\nimport time; time.sleep(120)\n"
    (tmp_path / "new" / "hog.py").write_text(simple_dag("reload_hog") + hog)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__ZYGOTE__") or "HEARTBEAT" in k},
        "AIRFLOW_CONFIG": str(config_file),
        "AIRFLOW__ZYGOTE__SOCKET": socket_endpoint(),
    }
    zygote = ZygoteProcess.start(env, tmp_path / "zygote.log")
    try:
        assert zygote.status()["workers"]["max"] == 1
        client = HostileClient(env["AIRFLOW__ZYGOTE__SOCKET"], "reload")
        assert client.hello().load["max_workers"] == 1
        client.send(spawn_message("before-1", tmp_path / "new" / "sleeper.py"))
        assert client.expect(Error, request_id="before-1").code == "rejected_path"

        config_file.write_text(_config(base, 3, [tmp_path / "old", tmp_path / "new"], memory_limit_mib=64))
        done = subprocess.run([AIRFLOW, "zygote", "reload"], env=env, capture_output=True, timeout=180, check=False)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        wait_for(lambda: zygote.status()["workers"]["max"] == 3, 30, "the gateway to adopt max_workers 3")

        for i in range(3):
            client.send(spawn_message(f"after-{i}", tmp_path / ("new" if i else "old") / "sleeper.py"))
        started = [client.expect(Started, timeout=90) for _ in range(3)]  # in the order their checks finish
        assert zygote.status()["workers"]["running"] == 3, "three run at once: the new max_workers applies"
        for worker in started:
            client.send(Signal(id=worker.id, signum=signal.SIGKILL))
        assert {client.expect(Exited, timeout=60).id for _ in started} == {"after-0", "after-1", "after-2"}
        hog = run_raw_parse(client, "hog", tmp_path / "new" / "hog.py", timeout=90)  # the new limit is enforced
        assert isinstance(hog.terminal, Exited), hog.describe()
        assert hog.terminal.outcome == "memory_limit" and "memory limit 64 MiB" in hog.terminal.note, hog.describe()
        client.close()
        adopted = zygote.events("gateway.config_adopted")
        assert adopted and adopted[-1]["max_workers"] == 3
    finally:
        zygote.stop()
