"""What the gateway needs from Airflow, computed before it becomes a lean process.

``airflow zygote serve`` runs inside Airflow's CLI (Airflow, SQLAlchemy, providers: ~100 MB). The
gateway only needs the ``[zygote]`` settings, the allowed roots (as configured: they are resolved
at every check), the versions and the config fingerprint, so the CLI computes them, hands them
over through a pipe and ``exec``s a fresh interpreter that never imports Airflow: the sidecar's
long-lived process stays small (~30 MB). The pipe, not the environment, carries the CURVE secret:
the gateway's environment is readable by same-uid DAG code (``/proc/<pid>/environ``).

These boot values stand until a forker generation reports what it read (``ready.config``); each
``ready`` then refreshes them (:func:`adopt_config`), so ``airflow zygote reload`` reaches the
gateway too. The endpoint and its keys are bound once and never change.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import protocol
import zygote
from zygote.config import Settings

ISOLATED_FLAGS = ("-P", "-s")
"""No cwd/script folder and no user site on ``sys.path``. (Not ``-I``: the forker needs
``PYTHONHASHSEED``, ``PYTHONPATH`` for approved preloads and the ``AIRFLOW*`` environment.)"""


@dataclass(frozen=True)
class GatewayBoot:
    settings: Settings
    roots: tuple[str, ...]
    versions: dict[str, Any]
    fingerprint: dict[str, str]

    @classmethod
    def from_airflow(cls) -> GatewayBoot:
        """Read everything from Airflow's configuration (in the CLI process)."""
        from zygote.config import configured_roots, load_settings
        from zygote.handshake import config_fingerprint, versions

        settings = load_settings()
        return cls(settings, configured_roots(settings), versions(), config_fingerprint())

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> GatewayBoot:
        raw = json.loads(data)
        return cls(Settings(**_tupled(raw["settings"])), tuple(raw["roots"]), raw["versions"], raw["fingerprint"])


FIXED_AT_BOOT = frozenset(
    {
        "socket",
        "socket_group",
        "curve_server_public_key",
        "curve_server_secret_key",
        "curve_client_public_key",
        "curve_client_secret_key",
        "curve_allowed_clients",
    }
)
"""Settings of the bound endpoint: a reload cannot change them (a restart does)."""


def adopt_config(
    settings: Settings, roots: tuple[str, ...], fingerprint: dict[str, str], config: dict[str, Any]
) -> tuple[Settings, tuple[str, ...], dict[str, str]]:
    """``ready.config`` applied over the current values; what it lacks (or cannot change) stays."""
    known = {f.name for f in dataclasses.fields(Settings)} - FIXED_AT_BOOT
    given = config.get("settings")
    changes = {k: v for k, v in _tupled(given).items() if k in known} if isinstance(given, dict) else {}
    new_roots = config.get("roots")
    new_fingerprint = config.get("fingerprint")
    return (
        dataclasses.replace(settings, **changes),
        tuple(str(r) for r in new_roots) if isinstance(new_roots, list) else roots,
        {str(k): str(v) for k, v in new_fingerprint.items()} if isinstance(new_fingerprint, dict) else fingerprint,
    )


def _tupled(values: dict[str, Any]) -> dict[str, Any]:
    """JSON/msgpack arrays back into the tuples :class:`Settings` holds."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}


def python_argv(entry: str) -> list[str]:
    """``python -P -s -c CODE``: ``entry`` run with this installation's ``zygote`` and ``protocol``.

    The gateway and the forker start from strings, so whatever ``sys.path`` finds first would run:
    a ``zygote/`` in the folder ``serve`` was started from (``-P`` drops the cwd) or in a
    ``PYTHONPATH`` folder meant for DAG code (a DAG repo, a checkout). ``PYTHONPATH`` itself stays
    (the forker preloads approved modules from it), so ``CODE`` imports both packages from the
    folders this process loaded them from, then takes those folders off ``sys.path`` again:
    submodules follow the packages' own ``__path__``.
    """
    homes = list(dict.fromkeys(_package_home(package) for package in (zygote, protocol)))
    pin = f"import sys; sys.path[:0] = {homes!r}; import zygote, protocol; del sys.path[:{len(homes)}]; "
    return [sys.executable, *ISOLATED_FLAGS, "-c", pin + entry]


def _package_home(package: ModuleType) -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(str(package.__file__))))


def read_boot(fd: int) -> GatewayBoot:
    """Read the boot record from the pipe the CLI left open for us, then close it."""
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    os.close(fd)
    return GatewayBoot.from_json(b"".join(chunks))


def hand_over(boot: GatewayBoot) -> int:
    """A pipe holding ``boot``, its read end inheritable across ``exec``."""
    read_fd, write_fd = os.pipe()
    data = boot.to_json()
    written = 0
    while written < len(data):
        written += os.write(write_fd, data[written:])
    os.close(write_fd)
    os.set_inheritable(read_fd, True)
    return read_fd
