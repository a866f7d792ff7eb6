"""``tcp://`` security: no keys, no service; CURVE with an allow-list; secrets stay in the gateway.

``airflow zygote serve`` on 127.0.0.1 and a free port. An allow-listed client key gets status and
parses; a key not on the list and a client that pins another server key get nothing; the server's
secret key is absent from the forker's and a worker's environment, argv and configuration.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import zmq
from dagfiles import write
from hostile_support import assert_ledger_balanced, marked_pids
from zygote_harness import AIRFLOW, ParseDriver, ZygoteProcess, socket_endpoint, wait_for

from zygote.client.control import ControlError, query_status
from zygote.config import Settings
from zygote.gateway.forker_link import forker_environment

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Keys:
    server_public: str
    server_secret: str
    client_public: str
    client_secret: str
    rogue_public: str
    rogue_secret: str

    @classmethod
    def generate(cls) -> Keys:
        pairs = [tuple(key.decode() for key in zmq.curve_keypair()) for _ in range(3)]
        return cls(*pairs[0], *pairs[1], *pairs[2])


@dataclass
class TcpZygote:
    zygote: ZygoteProcess
    keys: Keys
    endpoint: str
    dags: Path

    def settings(self, public: str = "", secret: str = "", server: str = "") -> Settings:
        return Settings(
            socket=self.endpoint,
            curve_server_public_key=server or self.keys.server_public,
            curve_client_public_key=public or self.keys.client_public,
            curve_client_secret_key=secret or self.keys.client_secret,
            heartbeat_interval=0.5,
            heartbeat_timeout=5.0,
            connect_timeout=10.0,
        )


def _serve_env(endpoint: str, **zygote: str) -> dict[str, str]:
    env = {**os.environ, "AIRFLOW__ZYGOTE__SOCKET": endpoint}
    env.update({f"AIRFLOW__ZYGOTE__{name.upper()}": value for name, value in zygote.items()})
    return env


@pytest.mark.parametrize(
    "configured",
    [{}, {"curve_server_public_key": "x" * 40, "curve_server_secret_key": "y" * 40}],
    ids=["no_keys", "no_allow_list"],
)
def test_tcp_without_curve_keys_refuses_to_start(configured: dict[str, str]) -> None:
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    done = subprocess.run(
        [AIRFLOW, "zygote", "serve"],
        env=_serve_env(endpoint, **configured),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "refusing to serve parse requests unauthenticated over TCP" in done.stderr
    assert "curve_allowed_clients" in done.stderr


@pytest.fixture(scope="module")
def tcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TcpZygote]:
    keys = Keys.generate()
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    dags = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / "security-tcp"
    dags.mkdir(exist_ok=True)
    env = _serve_env(
        endpoint,
        curve_server_public_key=keys.server_public,
        curve_server_secret_key=keys.server_secret,
        curve_allowed_clients=keys.client_public,
    )
    env["ZYGOTE_HOSTILE_MARK"] = "tcp-" + keys.client_public[:8]
    log = tmp_path_factory.mktemp("tcp") / "zygote-tcp.log"
    zygote = ZygoteProcess.start(env, log, wait=False)
    served = TcpZygote(zygote, keys, endpoint, dags)
    try:
        wait_for(lambda: _healthy(served), 90, "the tcp zygote to serve")
        yield served
    finally:
        assert zygote.stop() == 0, "the gateway did not stop cleanly (ZAP thread left running?)"
        wait_for(lambda: not marked_pids(env["ZYGOTE_HOSTILE_MARK"]), 10, "every zygote process to end")


def _healthy(served: TcpZygote) -> bool:
    if served.zygote.popen.poll() is not None:
        raise AssertionError(served.zygote.log_text()[-3000:])
    try:
        return bool(query_status(served.settings(), timeout_s=1.0).get("healthy"))
    except ControlError:
        return False


def test_allow_listed_client_gets_status_and_parses(tcp: TcpZygote, driver: ParseDriver) -> None:
    from zygote.client.connection import ZygoteConnection
    from zygote.client.ledger import Ledger

    assert query_status(tcp.settings())["gateway"]["endpoint"] == tcp.endpoint
    conn: Any = ZygoteConnection(tcp.settings(), Ledger())
    try:
        path = write(tcp.dags, "over_tcp.py", "# airflow DAG\n" + _dag("over_tcp"))
        parsed = driver.finish(driver.start_zygote(conn, path, tcp.dags))
        assert parsed.exit_code == 0
        assert [dag.data["dag"]["dag_id"] for dag in parsed.result.serialized_dags] == ["over_tcp"]
        assert_ledger_balanced(conn.ledger, requests=1)
    finally:
        conn.close()


def test_unlisted_client_key_is_refused(tcp: TcpZygote) -> None:
    rogue = tcp.settings(public=tcp.keys.rogue_public, secret=tcp.keys.rogue_secret)
    with pytest.raises(ControlError, match="no answer"):
        query_status(rogue, timeout_s=3.0)
    refusals = [e for e in tcp.zygote.events("client.unauthorized") if e.get("transport") == "tcp"]
    assert refusals and refusals[-1]["client_key"] == tcp.keys.rogue_public
    assert query_status(tcp.settings())["healthy"]  # and the zygote keeps serving


def test_client_pinning_another_server_key_gets_nothing(tcp: TcpZygote) -> None:
    impostor_public = zmq.curve_keypair()[0].decode()
    with pytest.raises(ControlError, match="no answer"):
        query_status(tcp.settings(server=impostor_public), timeout_s=3.0)
    assert query_status(tcp.settings())["healthy"]


def test_secrets_and_db_credentials_stay_out_of_the_workers(
    tcp: TcpZygote, driver: ParseDriver, tmp_path: Path
) -> None:
    from zygote.client.connection import ZygoteConnection
    from zygote.client.ledger import Ledger

    secret = tcp.keys.server_secret.encode()
    gateway = tcp.zygote.popen.pid
    assert secret in tcp.zygote.env["AIRFLOW__ZYGOTE__CURVE_SERVER_SECRET_KEY"].encode()  # what serve was given
    assert secret not in Path(f"/proc/{gateway}/environ").read_bytes()  # serve execs the gateway without it
    forker = query_status(tcp.settings())["forker"]["pid"]
    for part in ("environ", "cmdline"):
        assert secret not in Path(f"/proc/{forker}/{part}").read_bytes(), part
    seen = tmp_path / "worker-saw"
    body = (
        "import os\nfrom zygote.config import load_settings\n"
        "initial = open('/proc/self/environ', 'rb').read().decode(errors='replace')\n"  # survives os.environ edits
        f"open({str(seen)!r}, 'w').write(repr(sorted(os.environ.items())) + initial"
        " + load_settings().curve_server_secret_key)\n"
    )
    conn: Any = ZygoteConnection(tcp.settings(), Ledger())
    try:
        path = write(tcp.dags, "snoops.py", "# airflow DAG\n" + body + _dag("snoops"))
        assert driver.finish(driver.start_zygote(conn, path, tcp.dags)).exit_code == 0
    finally:
        conn.close()
    assert "CURVE_SERVER_PUBLIC_KEY" in seen.read_text()  # the worker did report its environment
    assert tcp.keys.server_secret not in seen.read_text()
    db_url = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]  # set for every process by conftest
    assert db_url.encode() in Path(f"/proc/{gateway}/environ").read_bytes()
    assert db_url not in seen.read_text()  # Airflow rewrites os.environ's copy; /proc/self/environ kept it


def test_forker_environment_drops_every_form_of_the_secrets() -> None:
    environ = {
        "AIRFLOW__ZYGOTE__CURVE_SERVER_SECRET_KEY": "s",
        "AIRFLOW__ZYGOTE__CURVE_SERVER_SECRET_KEY_CMD": "cat /secret",
        "AIRFLOW__ZYGOTE__CURVE_SERVER_SECRET_KEY_SECRET": "zygote/key",
        "AIRFLOW__ZYGOTE__CURVE_CLIENT_SECRET_KEY": "c",
        "AIRFLOW__ZYGOTE__CURVE_SERVER_PUBLIC_KEY": "p",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow:pw@db/airflow",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": "cat /run/secrets/db",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": "postgresql+asyncpg://airflow:pw@db/airflow",
        "AIRFLOW__CORE__SQL_ALCHEMY_CONN": "postgresql://airflow:pw@db/airflow",
        "PATH": "/bin",
    }
    env = forker_environment(environ)
    assert env == {
        "AIRFLOW__ZYGOTE__CURVE_SERVER_SECRET_KEY": "",  # masks a value from airflow.cfg
        "AIRFLOW__ZYGOTE__CURVE_CLIENT_SECRET_KEY": "",
        "AIRFLOW__ZYGOTE__CURVE_SERVER_PUBLIC_KEY": "p",
        "PATH": "/bin",
    }


def test_ipc_endpoint_helpers_reject_other_schemes() -> None:
    from zygote.transport import EndpointError, connect_dealer

    context: zmq.Context[Any] = zmq.Context()
    try:
        with pytest.raises(EndpointError, match="ipc:// or tcp://"):
            connect_dealer(context, replace(Settings(socket=socket_endpoint()), socket="inproc://x"), b"id")
    finally:
        context.term()


def _dag(dag_id: str) -> str:
    return (
        "import datetime\nfrom airflow.sdk import DAG\n"
        f"with DAG({dag_id!r}, schedule=None, start_date=datetime.datetime(2024, 1, 1)):\n    pass\n"
    )
