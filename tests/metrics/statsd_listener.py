"""A real UDP StatsD listener for tests: collects and parses the datagrams Airflow's Stats sends."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

MAX_DRAIN = 100_000
"""Datagrams one drain reads at most, so a sender that never pauses cannot keep it reading."""


@dataclass(frozen=True)
class StatsdLine:
    """One StatsD line: ``name:value|type[|@rate][|#tags]`` (tags only with DogStatsD)."""

    name: str
    value: float
    type: str

    @classmethod
    def parse(cls, line: str) -> StatsdLine:
        name, _, rest = line.partition(":")
        value, kind = rest.split("|")[:2]
        return cls(name, float(value), kind)


class StatsdListener:
    """Bound to 127.0.0.1 on a free port; ``lines`` grows as :meth:`drain` reads the socket."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.lines: list[StatsdLine] = []

    def drain(self, timeout: float = 0.0) -> list[StatsdLine]:
        """Read what is queued and what arrives within the next ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        for _ in range(MAX_DRAIN):
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, BlockingIOError):
                return self.lines
            self.lines.extend(StatsdLine.parse(line) for line in data.decode().splitlines() if line)
        return self.lines

    def wait_for(self, predicate: Any, timeout: float, what: str) -> list[StatsdLine]:
        """Read until ``predicate(lines)`` holds; fail with what arrived otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain(0.2)
            if predicate(self.lines):
                return self.lines
        names = sorted({line.name for line in self.lines})
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; got {names}")

    def named(self, name: str) -> list[StatsdLine]:
        return [line for line in self.lines if line.name == name]

    def names(self) -> set[str]:
        return {line.name for line in self.lines}

    def close(self) -> None:
        self.sock.close()


def start_airflow_stats() -> None:
    """What the dag-processor does before its loop: Airflow's Stats from the current ``[metrics]``."""
    from airflow.observability import stats
    from airflow.observability.metrics.stats_utils import get_stats_factory

    stats.initialize(factory=get_stats_factory(), export_legacy_names=True)
