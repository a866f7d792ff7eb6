"""``python -m zygote.client.health``: the container health check, without importing Airflow.

``airflow zygote status`` spends nearly all its time starting Airflow's CLI (20-25 s in a container
on a loaded 2-core machine, about a HEALTHCHECK's whole timeout), although the question it asks is
one round trip on the socket. This probe reads only the options the connection needs, from where
Airflow would (``AIRFLOW__ZYGOTE__*``, then ``[zygote]`` in ``airflow.cfg``, then the defaults),
and asks the same status query. When one of them comes from a ``_cmd`` or ``_secret`` source, only
Airflow can resolve it, so the probe hands over to ``airflow zygote status`` (exec, same exit codes).

Exit codes as ``airflow zygote status``: 0 healthy, 1 not healthy, 2 unreachable; ``--json`` prints
the whole report as ``airflow zygote status --json`` does.
"""

from __future__ import annotations

import configparser
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from protocol import PROTOCOL_VERSION, Hello
from zygote.client.control import ControlError, query_status
from zygote.config import OPTIONS, SECTION, Settings
from zygote.transport import ipc_path

CONNECTION_OPTIONS = ("socket", "curve_server_public_key", "curve_client_public_key", "curve_client_secret_key")
TIMEOUT_S = 10.0


class NeedsAirflow(Exception):
    """An option's value comes from a source only Airflow's configuration can resolve."""


def airflow_home(environ: dict[str, str]) -> str:
    return os.path.expanduser(environ.get("AIRFLOW_HOME") or "~/airflow")


def read_config_file(environ: dict[str, str]) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    path = environ.get("AIRFLOW_CONFIG") or str(Path(airflow_home(environ)) / "airflow.cfg")
    parser.read(os.path.expanduser(path))
    return parser


def connection_settings(environ: dict[str, str], config: configparser.RawConfigParser) -> Settings:
    """The options :func:`~zygote.transport.connect_dealer` reads, in Airflow's order of precedence."""
    defaults = {opt.name: opt.default for opt in OPTIONS}
    values: dict[str, Any] = {}
    for name in CONNECTION_OPTIONS:
        env_key = f"AIRFLOW__{SECTION.upper()}__{name.upper()}"
        indirect = [f"{env_key}_CMD", f"{env_key}_SECRET"]
        if any(key in environ for key in indirect) or any(
            config.has_option(SECTION, f"{name}{suffix}") for suffix in ("_cmd", "_secret")
        ):
            raise NeedsAirflow(f"[{SECTION}] {name} comes from a command or a secrets backend")
        if env_key in environ:
            raw = environ[env_key]
        elif config.has_option(SECTION, name):
            raw = config.get(SECTION, name)
        else:
            raw = defaults[name].replace("{AIRFLOW_HOME}", airflow_home(environ))
        values[name] = raw.strip()
    return Settings(**values)


def control_hello(client: str) -> Hello:
    """As :func:`zygote.handshake.control_hello`, with Airflow's version from its metadata (no import)."""
    return Hello(
        client=client,
        role="control",
        protocol=PROTOCOL_VERSION,
        airflow=metadata.version("apache-airflow"),
        python=platform.python_version(),
    )


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    environ = dict(os.environ)
    try:
        settings = connection_settings(environ, read_config_file(environ))
    except NeedsAirflow:
        os.execvp("airflow", ["airflow", "zygote", "status", *(["--json"] if as_json else [])])
    path = ipc_path(settings.socket)
    if path is not None and not path.exists():
        print(f"zygote health: no socket at {path}", file=sys.stderr)
        return 2
    try:
        report = query_status(settings, TIMEOUT_S, hello=control_hello)
    except ControlError as exc:
        print(f"zygote health: {exc}", file=sys.stderr)
        return 2
    healthy = bool(report.get("healthy"))
    reason = f" ({report['reason']})" if report.get("reason") else ""
    print(json.dumps(report, indent=2, sort_keys=True) if as_json else f"healthy: {healthy}{reason}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
