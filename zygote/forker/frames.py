"""Reading the frames the forker's children send it (worker reports, probe verdicts, warm-up).

A child runs DAG or library code, so what it writes is bounded here: one non-blocking read pass
takes at most ``budget`` bytes, and the selector calls again on the next turn if more is waiting.
A child that floods its report socket therefore costs the loop one bounded read per turn and
never stops forks, reaps or deadlines. A socket that sent garbage is reported closed: nothing it
sends later can be trusted to frame correctly.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

from protocol import FrameBuffer, Message, ProtocolError
from protocol.limits import MAX_FRAME
from zygote import linux

TURN_BUDGET = 256 * 1024
"""Bytes one read pass takes from a child's socket before the loop moves on."""
FINAL_BUDGET = MAX_FRAME + TURN_BUDGET
"""Bytes read after a child ended: enough for its last report, bounded against a grandchild's flood."""
CHUNK = 1 << 16


@dataclass
class ChildReader:
    """A child's report socket and the partial frame read from it so far."""

    sock: socket.socket
    buffer: FrameBuffer = field(default_factory=FrameBuffer)
    open: bool = True

    def read(self, budget: int = TURN_BUDGET) -> list[Message]:
        """Frames available now, reading at most ``budget`` bytes; ``open`` turns False at EOF or garbage."""
        messages: list[Message] = []
        while self.open and budget > 0:
            try:
                data = self.sock.recv(min(CHUNK, budget))
            except (BlockingIOError, InterruptedError):
                return messages
            except TimeoutError:
                raise
            except OSError:
                data = b""
            if not data:
                self.open = False
                return messages
            budget -= len(data)
            try:
                messages += self.buffer.feed(data)
            except ProtocolError:
                self.open = False
        return messages

    def read_until_eof(self, deadline: float) -> list[Message]:
        """Blocking read until EOF, garbage or ``deadline`` (start-up children only)."""
        messages: list[Message] = []
        self.sock.setblocking(True)
        while self.open and (remaining := deadline - time.monotonic()) > 0:
            self.sock.settimeout(remaining)
            try:
                messages += self.read(CHUNK)
            except TimeoutError:
                break
        return messages

    def close(self) -> None:
        self.sock.close()


def reap_blocking(pid: int) -> int:
    """Wait for one child (start-up only, after it was told or made to end)."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return -1
        except InterruptedError:
            continue
        return linux.exit_code_from_status(status)
