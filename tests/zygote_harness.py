"""Test helpers that drive real processes: the zygote CLI, and parse children the way the manager does."""

from __future__ import annotations

import gc
import json
import os
import selectors
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zygote.launcher import ZygoteProcess as LaunchedZygote

AIRFLOW = str(Path(sys.executable).parent / "airflow")


SOCKET_DIRS: list[str] = []
"""Socket directories made by this test session, removed when it ends."""


def socket_endpoint() -> str:
    """A short ipc:// path (sun_path is limited to ~107 bytes; pytest's tmp_path can be longer)."""
    directory = tempfile.mkdtemp(prefix="zs-", dir="/tmp")
    SOCKET_DIRS.append(directory)
    return f"ipc://{directory}/zygote.sock"


def settings_for(env: dict[str, str], **overrides: Any) -> Any:
    from zygote.config import Settings

    values: dict[str, Any] = {
        "socket": env["AIRFLOW__ZYGOTE__SOCKET"],
        "heartbeat_interval": 0.5,
        "heartbeat_timeout": 5.0,
        "connect_timeout": 10.0,
    }
    values.update(overrides)
    return Settings(**values)


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class ZygoteProcess(LaunchedZygote):
    """The package's launcher (``zygote.launcher``), with the tests' client settings and log events."""

    @property
    def settings(self) -> Any:
        return settings_for(self.env)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log_text().splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if name is None or event.get("event") == name:
                found.append(event)
        return found


@dataclass
class ParseOutcome:
    result: Any
    exit_code: int | None
    log_text: str
    proc: Any = None


@dataclass
class ParseDriver:
    """Starts parse children with Airflow's own classes and services them like the manager does."""

    log_dir: Path
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    _client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from airflow.dag_processing.processor import in_process_api_server
            from airflow.sdk.api.client import Client

            api = in_process_api_server()
            self._client = Client(base_url=None, token="", dry_run=True, transport=api.transport)
            self._client.base_url = "http://in-process.invalid./"
        return self._client

    def _kwargs(self, path: Path, bundle_path: Path, callbacks: Iterable[Any]) -> dict[str, Any]:
        import structlog
        from airflow.sdk.log import logging_processors
        from uuid6 import uuid7

        request_id = uuid7()
        handle = (self.log_dir / f"{path.name}.{request_id}.log").open("ab")
        logger = structlog.wrap_logger(
            structlog.BytesLogger(handle), processors=logging_processors(json_output=True), logger_name="processor"
        ).bind()
        return {
            "id": request_id,
            "path": path,
            "bundle_path": bundle_path,
            "bundle_name": "dags-folder",
            "dag_file_rel_path": str(path.relative_to(bundle_path)),
            "callbacks": list(callbacks),
            "selector": self.selector,
            "logger": logger,
            "logger_filehandle": handle,
            "client": self.client,
        }

    def start_stock(self, path: Path, bundle_path: Path, callbacks: Iterable[Any] = ()) -> Any:
        from airflow.dag_processing.processor import DagFileProcessorProcess

        # Garbage from earlier tests (an in-process Execution API client whose event-loop thread ran
        # here) would be finalized in the child, where that thread does not exist: it waits 5 s and
        # logs "Error while closing in-process execution API lifespan" into the file's log. A stock
        # manager keeps its API for its life, so its children never do that; collect it here first.
        gc.collect()
        return DagFileProcessorProcess.start(**self._kwargs(path, bundle_path, callbacks))

    def start_zygote(
        self, connection: Any, path: Path, bundle_path: Path, callbacks: Iterable[Any] = (), timeout: float = 60.0
    ) -> Any:
        from zygote.client.process import ZygoteDagFileProcessorProcess

        kwargs = self._kwargs(path, bundle_path, callbacks)
        return ZygoteDagFileProcessorProcess.start_remote(connection=connection, timeout=timeout, **kwargs)

    def finish(self, proc: Any, timeout: float = 60.0) -> ParseOutcome:
        """Service the selector until the process is ready, like ``_service_processor_sockets``."""
        deadline = time.monotonic() + timeout
        while not proc.is_ready:
            if time.monotonic() > deadline:
                proc.kill(signal.SIGKILL)
                raise AssertionError(f"parse of {proc.dag_file_rel_path} did not finish in {timeout} s")
            self.service(0.1)
        proc.close()
        log_path = Path(proc.logger_filehandle.name)
        return ParseOutcome(proc.parsing_result, proc._exit_code, log_path.read_text(errors="replace"), proc)

    def service(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout=timeout):
            handler, on_close = key.data
            try:
                need_more = handler(key.fileobj)
            except (BrokenPipeError, ConnectionResetError):
                need_more = False
            if not need_more:
                on_close(key.fileobj)
                key.fileobj.close()


def serialized(result: Any) -> dict[str, Any]:
    """DAG id -> serialized dict, for comparing stock and zygote parse results."""
    if result is None:
        return {}
    return {dag.data["dag"]["dag_id"]: dag.data for dag in result.serialized_dags}


class RawClient:
    """Speaks the wire protocol directly (for tests of what a misbehaving peer can do)."""

    def __init__(self, endpoint: str, name: str = "raw-client") -> None:
        import uuid

        import zmq

        self.zmq = zmq
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.name = f"{name}-{uuid.uuid4().hex[:8]}"
        self.socket.setsockopt(zmq.ROUTING_ID, self.name.encode())
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)

    def hello(self, **overrides: Any) -> Any:
        from protocol import Hello, Welcome
        from zygote.handshake import config_fingerprint, versions

        ours = versions()
        fields = {
            "client": self.name,
            "role": "client",
            "protocol": ours["protocol"],
            "airflow": ours["airflow"],
            "python": ours["python"],
            "config": config_fingerprint(),
        }
        fields.update(overrides)
        self.send(Hello(**fields))
        return self.expect(Welcome)

    def send(self, message: Any) -> None:
        from protocol import encode

        self.socket.send(encode(message))

    def send_raw(self, *frames: bytes) -> None:
        self.socket.send_multipart(list(frames))

    def recv(self, timeout: float = 10.0) -> Any:
        from protocol import decode

        if not self.socket.poll(int(timeout * 1000)):
            raise AssertionError(f"no message from the zygote within {timeout} s")
        return decode(self.socket.recv())

    def expect(self, kind: Any, timeout: float = 30.0, request_id: str | None = None) -> Any:
        """The next message of ``kind`` (for ``request_id``), skipping heartbeats and output."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            message = self.recv(remaining)
            if isinstance(message, kind) and (request_id is None or getattr(message, "id", None) == request_id):
                return message
        raise AssertionError(f"no {kind} within {timeout} s")

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()


def spawn_message(request_id: str, path: Path, timeout: float = 60.0) -> Any:
    from protocol import Spawn

    return Spawn(
        id=request_id,
        path=str(path),
        bundle_path=str(path.parent),
        bundle_name="dags-folder",
        timeout=timeout,
        cwd=str(path.parent),
    )


def pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def make_airflow_env(tmp_path: Path, migrated_db: Path) -> dict[str, str]:
    """What ``airflow_env`` gives, under any folder (module-scoped fixtures pass their own)."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(migrated_db, home / "airflow.db")
    dags = tmp_path / "dags"
    dags.mkdir()
    env = os.environ.copy()
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__ZYGOTE__SOCKET": socket_endpoint(),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(tmp_path / "bundles"),
        }
    )
    return env


def module_zygote(tmp_path_factory: Any) -> Iterator[ZygoteProcess]:
    """The body of a module-scoped ``zygote`` fixture: one zygote with this process's config."""
    env = os.environ.copy()
    env["AIRFLOW__ZYGOTE__SOCKET"] = socket_endpoint()
    process = ZygoteProcess.start(env, tmp_path_factory.mktemp("zygote") / "zygote.log")
    try:
        yield process
    finally:
        process.stop()
