"""``hello.process``: what a worker inherits from the dag-processor (SPEC.md 4a).

The folding tests run ``client_hello`` in a fresh interpreter with its own ``airflow.cfg``, as a
dag-processor container would: Airflow reads its configuration once, at import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from protocol import Hello, decode, encode
from protocol.limits import MAX_STR
from zygote.process_env import PROCESS_BUDGET, shareable_env, shareable_path

pytestmark = pytest.mark.timeout(120)

_HELLO_IN_CHILD = """
import json, sys
from zygote.config import load_settings
from zygote.handshake import client_hello
hello = client_hello("dag-processor-test", load_settings())
print(json.dumps({"process": hello.process, "sys_path": sys.path}))
"""

CFG = """\
[core]
load_examples = False
dags_folder = {home}/from_cfg_dags
[scheduler]
catchup_by_default = True
[secrets]
backend_kwargs_cmd = echo '{{"from": "cfg_cmd"}}'
[database]
sql_alchemy_conn = sqlite:///{home}/cfg.db
[zygote]
curve_client_secret_key = D:)Q[IlAW!ahhC2ac:9*A}}h:p?([4%%wOTJ%%JR%%cs
"""


def _child_process_map(tmp_path: Path, **extra_env: str) -> dict[str, Any]:
    home = tmp_path / "dag-processor-home"
    home.mkdir(exist_ok=True)
    (home / "airflow.cfg").write_text(CFG.format(home=home))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(home), **extra_env})
    done = subprocess.run(
        [sys.executable, "-c", _HELLO_IN_CHILD], env=env, capture_output=True, text=True, timeout=100, check=True
    )
    printed = json.loads(done.stdout.splitlines()[-1])
    assert printed["process"]["sys_path"] == printed["sys_path"]
    return dict(printed["process"])


@pytest.fixture(scope="module")
def folded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _child_process_map(
        tmp_path_factory.mktemp("fold"),
        TEAM_NAME="data-platform",
        AIRFLOW_VAR_ZYGOTE_ONLY_HERE="from-dag-processor",
        AIRFLOW__SCHEDULER__CREATE_CRON_DATA_INTERVALS="True",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD="echo sqlite:////tmp/secret.db",
        AIRFLOW__CORE__FERNET_KEY="not-for-the-zygote",
        AIRFLOW__API__SECRET_KEY_SECRET="path/in/backend",
        AIRFLOW__SENTRY__SENTRY_DSN_CMD="echo https://dsn.example",
        AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL="77",
    )


def test_the_process_environment_crosses(folded: dict[str, Any]) -> None:
    env = folded["env"]
    assert env["TEAM_NAME"] == "data-platform"
    assert env["AIRFLOW_VAR_ZYGOTE_ONLY_HERE"] == "from-dag-processor"
    assert env["AIRFLOW__SCHEDULER__CREATE_CRON_DATA_INTERVALS"] == "True"  # a variable keeps its own text


def test_config_file_values_and_defaults_are_folded_in(folded: dict[str, Any]) -> None:
    env = folded["env"]
    assert env["AIRFLOW__SCHEDULER__CATCHUP_BY_DEFAULT"] == "True"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"].endswith("dag-processor-home/from_cfg_dags")
    assert env["AIRFLOW__SENSORS__DEFAULT_TIMEOUT"] == "604800"  # a default, so the zygote's cfg cannot win
    assert env["AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL"] == "77", "resolved through its deprecated name"


def test_cmd_options_arrive_resolved_and_their_commands_do_not(folded: dict[str, Any]) -> None:
    env = folded["env"]
    assert json.loads(env["AIRFLOW__SECRETS__BACKEND_KWARGS"]) == {"from": "cfg_cmd"}
    assert env["AIRFLOW__SENTRY__SENTRY_DSN"] == "https://dsn.example\n"  # as Airflow reads it: with the newline
    assert "AIRFLOW__SENTRY__SENTRY_DSN_CMD" not in env
    sources = [name for name in env if name.endswith(("_CMD", "_SECRET"))]
    assert sources == ["AIRFLOW__LOGGING__MIN_LENGTH_MASKED_SECRET"], "an option of that name, not a source"


def test_denylisted_names_never_cross(folded: dict[str, Any]) -> None:
    names = {name.upper() for name in folded["env"]}
    leaked = [n for n in names if n.startswith(("AIRFLOW__DATABASE__", "AIRFLOW__CORE__SQL_ALCHEMY_CONN"))]
    assert leaked == []
    assert not names & {
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__ZYGOTE__CURVE_CLIENT_SECRET_KEY",
    }
    assert "sqlite:////tmp/secret.db" not in folded["env"].values()
    assert "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs" not in folded["env"].values()


def test_sys_path_is_the_clients(folded: dict[str, Any]) -> None:
    # equality with the child's own sys.path is checked in _child_process_map
    assert any(entry.endswith("site-packages") for entry in folded["sys_path"])


def test_a_secret_value_under_any_name_is_dropped() -> None:
    env = {"KEY_COPY": "s3cret-value", "OTHER": "fine"}
    assert shareable_env(env, frozenset({"s3cret-value"})) == {"OTHER": "fine"}


def test_denylist_is_case_insensitive() -> None:
    env = {"airflow__database__sql_alchemy_conn": "x", "Airflow__Zygote__Curve_Server_Secret_Key": "y", "A": "b"}
    assert shareable_env(env) == {"A": "b"}


def test_oversized_values_are_dropped_and_only_their_name_logged() -> None:
    big = "v" * (MAX_STR + 1)
    with capture_logs() as logs:
        kept = shareable_env({"HUGE_VAR": big, "SMALL": "ok", "X" * (MAX_STR + 1): "name too long"})
    assert kept == {"SMALL": "ok"}
    dropped = [entry for entry in logs if entry["event"] == "process.variable_dropped"]
    assert {entry["variable"][:8] for entry in dropped} == {"HUGE_VAR", "X" * 8}
    assert not any(big in json.dumps(entry) for entry in logs)


def test_undecodable_values_and_path_entries_are_dropped() -> None:
    undecodable = b"caf\xe9".decode(errors="surrogateescape")
    assert shareable_env({"BAD": undecodable, "GOOD": "x"}) == {"GOOD": "x"}
    assert shareable_path(["/ok", undecodable, "/p" * MAX_STR]) == ["/ok"]


def test_the_whole_map_stays_within_its_budget() -> None:
    env = {f"VAR_{i}": "x" * (MAX_STR - 100) for i in range(PROCESS_BUDGET // MAX_STR + 20)}
    kept = shareable_env(env)
    assert 0 < len(kept) < len(env)
    hello = Hello(client="c", role="client", protocol=1, airflow="3", python="3.11", process={"env": kept})
    assert decode(encode(hello)) == hello


def test_the_real_hello_is_encodable(folded: dict[str, Any]) -> None:
    hello = Hello(client="c", role="client", protocol=1, airflow="3", python="3.11", process=folded)
    assert decode(encode(hello)) == hello
