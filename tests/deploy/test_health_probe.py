"""The lean health check's reading of the connection options (``zygote.client.health``).

It must find the socket where Airflow's configuration would (environment, then ``airflow.cfg``,
then the default under ``AIRFLOW_HOME``) and hand over to ``airflow zygote status`` when a value
needs Airflow to resolve it. The probe against a running zygote is run in the container test.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

from zygote.client.health import NeedsAirflow, connection_settings, read_config_file

pytestmark = pytest.mark.timeout(60)


def config(text: str = "") -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return parser


def test_environment_wins_over_the_config_file() -> None:
    env = {"AIRFLOW__ZYGOTE__SOCKET": "ipc:///run/a/sock/zygote.sock"}
    settings = connection_settings(env, config("[zygote]\nsocket = ipc:///elsewhere.sock\n"))
    assert settings.socket == "ipc:///run/a/sock/zygote.sock"


def test_config_file_then_default_under_airflow_home(tmp_path: Path) -> None:
    (tmp_path / "airflow.cfg").write_text("[zygote]\nsocket = ipc:///from/cfg.sock\ncurve_server_public_key = k\n")
    env = {"AIRFLOW_HOME": str(tmp_path)}
    settings = connection_settings(env, read_config_file(env))
    assert (settings.socket, settings.curve_server_public_key) == ("ipc:///from/cfg.sock", "k")
    other = tmp_path / "other.cfg"
    other.write_text("[core]\nload_examples = False\n")
    env["AIRFLOW_CONFIG"] = str(other)
    assert connection_settings(env, read_config_file(env)).socket == f"ipc://{tmp_path}/zygote/zygote.sock"


@pytest.mark.parametrize(
    ("env", "cfg"),
    [
        ({"AIRFLOW__ZYGOTE__CURVE_CLIENT_SECRET_KEY_CMD": "cat /secret"}, ""),
        ({"AIRFLOW__ZYGOTE__SOCKET_SECRET": "zygote-socket"}, ""),
        ({}, "[zygote]\ncurve_client_secret_key_cmd = cat /secret\n"),
    ],
)
def test_values_only_airflow_can_resolve_hand_over(env: dict[str, str], cfg: str) -> None:
    with pytest.raises(NeedsAirflow):
        connection_settings(env, config(cfg))


def test_probe_never_imports_airflow(tmp_path: Path) -> None:
    """The point of the probe: its whole run, unreachable zygote included, loads no Airflow module."""
    code = (
        "import runpy, sys\n"
        "try:\n    runpy.run_module('zygote.client.health', run_name='__main__')\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        "print(code, sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))\n"
    )
    env = {"AIRFLOW_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=50
    )
    assert done.stdout.splitlines()[-1] == "2 []", done.stdout + done.stderr
    assert "no socket at" in done.stderr
