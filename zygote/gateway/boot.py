"""What the gateway needs from Airflow, computed before it becomes a lean process.

``airflow zygote serve`` runs inside Airflow's CLI (Airflow, SQLAlchemy, providers: ~100 MB). The
gateway only needs the ``[zygote]`` settings, the allowed roots, the versions and the config
fingerprint, so the CLI computes them, hands them over through a pipe and ``exec``s a fresh
interpreter that never imports Airflow: the sidecar's long-lived process stays small (~30 MB).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any

from zygote.config import Settings


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
        from zygote.gateway.allowed_paths import resolved_roots
        from zygote.handshake import config_fingerprint, versions

        settings = load_settings()
        roots = tuple(str(root) for root in resolved_roots(configured_roots(settings)))
        return cls(settings, roots, versions(), config_fingerprint())

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> GatewayBoot:
        raw = json.loads(data)
        settings: dict[str, Any] = {
            key: tuple(value) if isinstance(value, list) else value for key, value in raw["settings"].items()
        }
        return cls(Settings(**settings), tuple(raw["roots"]), raw["versions"], raw["fingerprint"])


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
