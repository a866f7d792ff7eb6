"""One worker's channels inside the gateway: non-blocking reads within credit, buffered input.

The gateway never blocks on a worker socket: reads happen only when the poller said readable and
the client has credit left; input waits in a bounded buffer until the socket is writable, and is
*held* (not written at all) until the gateway checked the first frame (``parse_gate``). Credit never
exceeds the window the gateway announced, whatever a client acknowledges.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from protocol import CHANNELS
from zygote.gateway.outbox import Outbox, OutboxFull

CHUNK = 256 * 1024
MAX_PENDING_INPUT = 64 * 1024 * 1024
LIMITED_CHANNELS = frozenset({"stdout", "stderr"})


class InputOverflow(Exception):
    """The client sent more input than the worker consumed, past :data:`MAX_PENDING_INPUT`."""


@dataclass
class Relay:
    """The five parent-side channel sockets of one worker."""

    sockets: dict[str, socket.socket]
    credit: int
    output_limit: int
    window: int = 0
    held: bool = True
    limited_bytes: int = 0
    dropped: int = 0
    marker_due: bool = False
    pending_input: Outbox = field(default_factory=lambda: Outbox(MAX_PENDING_INPUT))

    @classmethod
    def from_fds(cls, fds: list[int], credit: int, output_limit: int) -> Relay:
        sockets = {name: socket.socket(fileno=fd) for name, fd in zip(CHANNELS, fds, strict=True)}
        for sock in sockets.values():
            sock.setblocking(False)
        return cls(sockets, credit, output_limit, window=credit)

    def add_credit(self, size: int) -> None:
        """The client delivered ``size`` bytes; never more outstanding than the window."""
        self.credit = min(self.window, self.credit + max(0, size))

    def release(self) -> None:
        """The first frame passed the gate: from now on input flows to the worker."""
        self.held = False
        self.flush_input()

    def readable_fds(self) -> dict[int, str]:
        """Channels to poll for reading: none while the client owes us credit."""
        if self.credit <= 0:
            return {}
        return {sock.fileno(): name for name, sock in self.sockets.items()}

    def wants_write(self) -> int | None:
        sock = self.sockets.get("requests")
        return sock.fileno() if sock is not None and self.pending_input and not self.held else None

    def read(self, channel: str) -> tuple[bytes, bool]:
        """Read what is there (within credit). Returns (data to forward, still open)."""
        sock = self.sockets[channel]
        try:
            data = sock.recv(min(CHUNK, max(self.credit, 1)))
        except (BlockingIOError, InterruptedError):
            return b"", True
        except OSError:
            data = b""
        if not data:
            self.close(channel)
            return b"", False
        return self._limit(channel, data), True

    def _limit(self, channel: str, data: bytes) -> bytes:
        if channel not in LIMITED_CHANNELS or not self.output_limit:
            self.credit -= len(data)
            return data
        allowed = max(0, self.output_limit - self.limited_bytes)
        self.limited_bytes += len(data)
        kept = data[:allowed]
        if len(kept) < len(data) and not self.dropped:
            self.marker_due = True
        self.dropped += len(data) - len(kept)
        self.credit -= len(kept)
        return kept

    def take_marker(self) -> bool:
        """True once, after the read that first crossed the output limit."""
        due, self.marker_due = self.marker_due, False
        return due

    def add_input(self, data: bytes) -> None:
        try:
            self.pending_input.add(data)
        except OutboxFull:
            raise InputOverflow(f"more than {MAX_PENDING_INPUT} bytes of input the worker did not read") from None
        self.flush_input()

    def flush_input(self) -> None:
        sock = self.sockets.get("requests")
        if sock is None:
            self.pending_input.clear()
        elif not self.held:
            self.pending_input.flush(sock)

    def close(self, channel: str) -> None:
        sock = self.sockets.pop(channel, None)
        if sock is not None:
            sock.close()

    def close_all(self) -> None:
        for channel in list(self.sockets):
            self.close(channel)

    @property
    def all_closed(self) -> bool:
        return not self.sockets
