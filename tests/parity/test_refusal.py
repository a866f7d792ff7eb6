"""A real zygote refuses a dag-processor whose import-time settings differ, naming each one.

The zygote is started with its own values for an option the forker consumes at import
(``[email] default_email_on_failure``, a module-level default of every operator), a sensitive one
(``[secrets] backend_kwargs``) and a plugins folder; the client's hello is this test process's
(the dag-processor side). Options read during a parse differ too and are *not* refused: they reach
the worker with the dag-processor's environment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from zygote_harness import RawClient

from protocol import Error
from zygote.handshake import client_hello

pytestmark = pytest.mark.timeout(120)

ZYGOTE_ONLY_SECRET = "zygote-only-s3cr3t"


def test_import_time_differences_are_refused_by_name(
    inproc_env: dict[str, str], zygote_factory: Any, tmp_path: Path
) -> None:
    plugins = tmp_path / "zygote-plugins"
    plugins.mkdir()
    (plugins / "my_plugin.py").write_text("# a plugin only the zygote has\n")
    zygote = zygote_factory(
        inproc_env,
        AIRFLOW__EMAIL__DEFAULT_EMAIL_ON_FAILURE="False",
        AIRFLOW__SECRETS__BACKEND_KWARGS=json.dumps({"token": ZYGOTE_ONLY_SECRET}),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(plugins),
        AIRFLOW__SCHEDULER__CATCHUP_BY_DEFAULT="True",  # read per parse: follows the client, not refused
    )
    client = RawClient(zygote.env["AIRFLOW__ZYGOTE__SOCKET"], "dag-processor")
    try:
        client.send(client_hello(client.name, zygote.settings))
        error = client.expect(Error)
    finally:
        client.close()
    assert error.code == "config_mismatch"
    assert "[email] default_email_on_failure: dag-processor 'True' vs zygote 'False'" in error.message
    assert "[secrets] backend_kwargs: dag-processor '' vs zygote 'sha256:" in error.message
    assert "plugins_folder: dag-processor 'absent' vs zygote '1 files, sha256:" in error.message
    assert "catchup_by_default" not in error.message
    assert error.message.startswith("3 setting(s)")
    assert ZYGOTE_ONLY_SECRET not in error.message
    assert ZYGOTE_ONLY_SECRET not in zygote.log_text()
