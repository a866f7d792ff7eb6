"""A worker runs with the environment and ``sys.path`` its session sent (SPEC.md 4a), as a stock child.

Driven through a real gateway by a raw protocol client: the map is sent in ``hello.process`` (what
the gateway keeps per session and forwards) and in ``spawn.process`` (what a gateway that does not
keep it yet forwards as received), so the test holds with either gateway. The DAG file records what
its worker saw at its top level; the worker reaches it through Airflow's own entrypoint, fed the
request frame the manager would send.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dagfiles import simple_dag, write
from zygote_harness import RawClient, ZygoteProcess, spawn_message

pytestmark = pytest.mark.e2e


def _process(extra_path: Path) -> dict[str, Any]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW__DATABASE__")}
    env["ZT_SESSION_MARK"] = "from-the-dag-processor"
    return {"env": env, "sys_path": [str(extra_path), *sys.path]}


def _parse_request(path: Path) -> bytes:
    from airflow.dag_processing.processor import DagFileParseRequest
    from airflow.sdk.execution_time.comms import _ResponseFrame

    request = DagFileParseRequest(file=str(path), bundle_path=path.parent, bundle_name="dags-folder")
    return bytes(_ResponseFrame(id=0, body=request.model_dump()).as_bytes())


def _wait_keeping_alive(client: RawClient, done: Any, timeout: float = 120.0) -> None:
    """Wait for ``done()``, sending heartbeats: a silent session is dropped by heartbeat_timeout."""
    from protocol import Heartbeat

    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"nothing recorded within {timeout} s"
        client.send(Heartbeat())
        if client.socket.poll(200):
            client.recv()


def test_worker_sees_the_sessions_environment_and_sys_path(zygote: ZygoteProcess, dags: Path, tmp_path: Path) -> None:
    from protocol import Exited, Input, Signal, Started

    only_here = tmp_path / "session-path"
    only_here.mkdir()
    (only_here / "zt_session_only.py").write_text("VALUE = 'importable only through the session sys.path'\n")
    seen = tmp_path / "seen.json"
    body = (
        "import json, os, sys\n"
        "import zt_session_only\n"
        f"json.dump({{'mark': os.environ.get('ZT_SESSION_MARK'), 'value': zt_session_only.VALUE,"
        f" 'first_path': sys.path[0], 'cwd': os.getcwd()}}, open({str(seen)!r}, 'w'))\n"
    )
    path = write(dags, "session_process.py", simple_dag("session_process") + body)
    process = _process(only_here)
    assert "ZT_SESSION_MARK" not in os.environ and not (dags / "zt_session_only.py").exists()
    client = RawClient(zygote.settings.socket)
    try:
        client.hello(process=process)
        client.send(dataclasses.replace(spawn_message("with-process", path), process=process))
        client.expect(Started, request_id="with-process")
        client.send(Input(id="with-process", data=_parse_request(path)))
        _wait_keeping_alive(client, lambda: seen.exists() and seen.read_text().endswith("}"))
        client.send(Signal(id="with-process", signum=signal.SIGKILL))  # the rest is the manager's dialogue
        client.expect(Exited, request_id="with-process")
    finally:
        client.close()
    assert json.loads(seen.read_text()) == {
        "mark": "from-the-dag-processor",
        "value": "importable only through the session sys.path",
        "first_path": str(only_here),
        "cwd": str(dags),
    }
    assert "ZT_SESSION_MARK" not in Path(f"/proc/{zygote.status()['forker']['pid']}/environ").read_text()
