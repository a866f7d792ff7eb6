"""Helpers for the preload and reload tests: a zygote that can import the test libraries.

The libraries in ``preload_libs/`` each behave in one way at import (slow, starts a thread, opens
a socket, raises, raises only in the forker, well-behaved); the zygote gets that folder on
PYTHONPATH and the DAG files written here import them. A worker runs with its client's ``sys.path``
(SPEC 4a), so the test process, the client here, has the folder on ``sys.path`` while a session is
open, as a dag-processor started with that PYTHONPATH would; it never imports the libraries itself.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagfiles import simple_dag, write
from zygote_harness import ParseDriver, ZygoteProcess, serialized, socket_endpoint, wait_for

LIBS = Path(__file__).resolve().parent / "preload_libs"


def dags_folder(name: str) -> Path:
    """A folder under the session's DAG folder (an allowed root of every zygote)."""
    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def zygote_env(**zygote_options: str) -> dict[str, str]:
    """This process's Airflow config, a private socket, the test libraries on PYTHONPATH."""
    env = os.environ.copy()
    env["AIRFLOW__ZYGOTE__SOCKET"] = socket_endpoint()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(LIBS), env.get("PYTHONPATH", "")]))
    env.update({f"AIRFLOW__ZYGOTE__{name.upper()}": value for name, value in zygote_options.items()})
    return env


def config_file_with(target: Path, **zygote_options: str) -> Path:
    """A copy of this session's airflow.cfg with ``[zygote]`` options set (for AIRFLOW_CONFIG).

    The session's file exists once ``airflow db migrate`` ran (the ``migrated_db`` fixture).
    """
    from airflow.configuration import AIRFLOW_CONFIG

    head, marker, rest = Path(AIRFLOW_CONFIG).read_text().partition("\n[zygote]\n")
    assert marker, f"no [zygote] section in {AIRFLOW_CONFIG}"
    section, next_header, tail = rest.partition("\n[")
    for name, value in zygote_options.items():
        section, count = re.subn(rf"(?m)^{name} = .*$", f"{name} = {value}", section, count=1)
        assert count == 1, f"[zygote] {name} is not in {AIRFLOW_CONFIG}"
    target.write_text(head + marker + section + next_header + tail)
    return target


def importing_dag(dags: Path, dag_id: str, *modules: str, body: str = "") -> Path:
    """A DAG file (one DAG named ``dag_id``) that imports ``modules`` and then runs ``body``."""
    imports = "".join(f"import {name}\n" for name in modules)
    return write(dags, f"{dag_id}.py", simple_dag(dag_id) + imports + body)


def gated_body(gate: Path) -> str:
    """DAG-file code that blocks (at most 120 s) until ``gate`` exists: keeps a worker busy on cue.

    It cancels the alarm behind Airflow's ``dagbag_import_timeout`` (30 s), which a reload on a
    busy machine can outlast.
    """
    return (
        "import os, signal, time\n"
        "signal.setitimer(signal.ITIMER_REAL, 0)\n"
        "_until = time.monotonic() + 120\n"
        f"while not os.path.exists({str(gate)!r}) and time.monotonic() < _until:\n"
        "    time.sleep(0.01)\n"
    )


@contextmanager
def connected(zygote: ZygoteProcess) -> Iterator[Any]:
    """A client session (the real relay thread) to ``zygote``, with its ledger."""
    from zygote.client.connection import ZygoteConnection
    from zygote.client.ledger import Ledger

    sys.path.insert(0, str(LIBS))
    connection = ZygoteConnection(zygote.settings, Ledger())
    try:
        yield connection
    finally:
        connection.close()
        sys.path.remove(str(LIBS))


@dataclass
class Parsed:
    """One parse through the zygote: its ledger entry and the DAG ids Airflow got back."""

    entry: Any
    dag_ids: list[str]
    import_errors: dict[str, str]

    @property
    def imports(self) -> dict[str, float]:
        imports: dict[str, float] = self.entry.stats.get("imports", {})
        return imports


def parse(driver: ParseDriver, connection: Any, path: Path) -> Parsed:
    """Parse ``path`` through the zygote, as the manager would, and wait for the result."""
    outcome = driver.finish(driver.start_zygote(connection, path, path.parent))
    return _parsed(connection, outcome.proc, outcome.result)


def _parsed(connection: Any, proc: Any, result: Any) -> Parsed:
    [entry] = [e for e in connection.ledger.entries if e.request_id == str(proc.id)]
    errors = dict(result.import_errors) if result is not None else {}
    return Parsed(entry, sorted(serialized(result)), errors)


def preload_of(zygote: ZygoteProcess) -> dict[str, dict[str, Any]]:
    preload: dict[str, dict[str, Any]] = zygote.status()["preload"]
    return preload


def wait_for_state(zygote: ZygoteProcess, module: str, states: set[str], timeout: float = 30.0) -> dict[str, Any]:
    """The module's preload record once its state is one of ``states``."""

    def settled() -> dict[str, Any] | None:
        record = preload_of(zygote).get(module)
        return record if record and record["state"] in states else None

    record: dict[str, Any] = wait_for(settled, timeout, f"{module} to become {'/'.join(sorted(states))}", 0.1)
    return record


def probes_started_with(zygote: ZygoteProcess, module: str) -> int:
    """How many probe children the forker started with ``module`` first in their batch."""
    return sum(1 for event in zygote.events("preload.probing") if event.get("first") == module)


@dataclass
class ParseStream:
    """Keeps ``width`` parses of ``path`` in flight; every one is finished and kept."""

    driver: ParseDriver
    connection: Any
    path: Path
    width: int = 2
    running: list[Any] = field(default_factory=list)
    done: list[Parsed] = field(default_factory=list)
    started: int = 0

    def pump(self) -> None:
        """Finish the parses that are done and start new ones up to ``width``."""
        self.driver.service(0.02)
        for proc in [p for p in self.running if p.is_ready]:
            self.running.remove(proc)
            self.done.append(self._finish(proc))
        while len(self.running) < self.width:
            self.start(self.path)

    def start(self, path: Path) -> Any:
        proc = self.driver.start_zygote(self.connection, path, path.parent)
        self.running.append(proc)
        self.started += 1
        return proc

    def pump_until(self, condition: Any, timeout: float, what: str) -> None:
        """Pump until ``condition()`` is true (checked between rounds), within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self.pump()

    def served_by(self, generation: int) -> list[Parsed]:
        return [parsed for parsed in self.done if parsed.entry.stats.get("generation") == generation]

    def serve_until(self, condition: Any, timeout: float, what: str) -> None:
        """Serve the running parses (answer their workers), starting none, until ``condition()``."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self.driver.service(0.02)

    def finish_all(self, timeout: float = 60.0, but: Any = None) -> None:
        """Finish every running parse (except ``but``), starting none."""
        for proc in [p for p in self.running if p is not but]:
            self.running.remove(proc)
            self.done.append(self._finish(proc, timeout))

    def _finish(self, proc: Any, timeout: float = 60.0) -> Parsed:
        outcome = self.driver.finish(proc, timeout)
        return _parsed(self.connection, proc, outcome.result)
