"""Bytes waiting for a non-blocking socket: the gateway's one buffered send.

The gateway never blocks on a write (a worker or the forker that stops reading must not stall
every other session), so what a socket does not take now waits here until the poller says it is
writable. A socket that fails for good drops what waits: its reader is gone.
"""

from __future__ import annotations

import socket


class OutboxFull(Exception):
    """More bytes would wait than the outbox's bound allows."""


class Outbox:
    """A byte queue for one socket, optionally bounded."""

    def __init__(self, limit: int = 0) -> None:
        self.data = bytearray()
        self.limit = limit

    def __len__(self) -> int:
        return len(self.data)

    def add(self, data: bytes) -> None:
        """Queue ``data``; :class:`OutboxFull` (and nothing queued) past the bound."""
        if self.limit and len(self.data) + len(data) > self.limit:
            raise OutboxFull(f"more than {self.limit} bytes waiting")
        self.data += data

    def flush(self, sock: socket.socket) -> None:
        """Send what the socket takes now, without blocking."""
        while self.data:
            try:
                sent = sock.send(self.data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.data.clear()
                return
            del self.data[:sent]

    def clear(self) -> None:
        self.data.clear()
