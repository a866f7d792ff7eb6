"""The gateway and the forker run the installed ``zygote`` and ``protocol``, whatever cwd and ``PYTHONPATH`` hold.

Both start as ``python -c`` from :func:`~zygote.gateway.boot.python_argv`. Started from a folder
holding a fake ``zygote/`` and ``protocol/`` (a checkout, a DAG repo), with another such folder on
``PYTHONPATH`` (DAG code's helpers), the installed packages must run, and ``sys.path`` must be
what ``python -P -s`` gives: the ``PYTHONPATH`` entry kept (approved preloads come from it), no
cwd, no leftover of the pin. ``tests/e2e/test_gateway_faults.py`` starts a whole zygote from such a cwd.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import protocol
import zygote
from zygote.gateway.boot import python_argv

PROBE = (
    "import json, sys, protocol, zygote.forker.main, zygote.gateway.main; "
    "print(json.dumps({'files': [m.__file__ for m in (zygote, protocol, zygote.forker.main)], 'path': sys.path}))"
)


def _fake_packages(folder: Path) -> Path:
    for package in ("zygote", "protocol"):
        (folder / package).mkdir(parents=True)
        (folder / package / "__init__.py").write_text(f"raise SystemExit('the fake {package} in {folder} ran')\n")
    return folder


def test_installed_packages_run_whatever_cwd_and_pythonpath_hold(tmp_path: Path) -> None:
    cwd, dag_repo = _fake_packages(tmp_path / "cwd"), _fake_packages(tmp_path / "dag-repo")
    env = {**os.environ, "PYTHONPATH": str(dag_repo)}

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)

    done = run([*python_argv(PROBE), "--an-argument"])
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["files"][:2] == [zygote.__file__, protocol.__file__]
    assert Path(seen["files"][2]).is_relative_to(Path(zygote.__file__).parent)
    plain = run([sys.executable, "-P", "-s", "-c", "import json, sys; print(json.dumps(sys.path))"])
    assert seen["path"] == json.loads(plain.stdout)
    assert str(dag_repo) in seen["path"] and str(cwd) not in seen["path"] and "" not in seen["path"]
