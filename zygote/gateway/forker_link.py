"""The gateway's side of one forker generation: the process, its socketpair, fds in flight.

The forker runs no DAG code itself but its workers do, and they inherit its environment: the
gateway starts it with the CURVE secrets removed (and masked, so a value from ``airflow.cfg``
does not reach it either) and without metadata-DB connection strings (nothing in the zygote
uses the DB; Airflow falls back to its default), and with an empty signal mask (the gateway blocks the signals it reads
from a signalfd, and ``posix_spawn`` would otherwise pass that mask on).
"""

from __future__ import annotations

import enum
import os
import socket
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from protocol import FrameBuffer, Message, Started, frame
from zygote.gateway.boot import python_argv
from zygote.gateway.outbox import Outbox

FDS_PER_WORKER = 5
_FORKER_CODE = "from zygote.forker.main import main; main()"
SECRET_VARIABLES = ("AIRFLOW__ZYGOTE__CURVE_SERVER_SECRET_KEY", "AIRFLOW__ZYGOTE__CURVE_CLIENT_SECRET_KEY")
"""Also their ``_CMD`` and ``_SECRET`` forms, which would make the forker fetch the secret itself."""
DB_VARIABLES = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__SQL_ALCHEMY_CONN")
"""Prefixes: ``_ASYNC``, ``_CMD`` and ``_SECRET`` forms are withheld too."""


class ForkerState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    GONE = "gone"


@dataclass
class ForkerLink:
    generation: int
    pid: int
    sock: socket.socket
    state: ForkerState = ForkerState.STARTING
    buffer: FrameBuffer = field(default_factory=FrameBuffer)
    fds: deque[int] = field(default_factory=deque)
    out: Outbox = field(default_factory=Outbox)
    frozen: int = 0
    """Objects in its frozen heap when it said ``ready`` (``gc.get_freeze_count()``)."""

    @classmethod
    def spawn(cls, generation: int, verbose: bool) -> ForkerLink:
        """Start a fresh interpreter (not a fork of the gateway) as forker ``generation``."""
        ours, theirs = socket.socketpair()
        os.set_inheritable(theirs.fileno(), True)
        argv = [*python_argv(_FORKER_CODE), "--fd", str(theirs.fileno()), "--generation", str(generation)]
        if verbose:
            argv.append("--verbose")
        pid = os.posix_spawn(sys.executable, argv, forker_environment(os.environ), setsigmask=())
        theirs.close()
        ours.setblocking(False)
        return cls(generation, pid, ours)

    def send(self, message: Message) -> None:
        self.out.add(frame(message))
        self.flush()

    def flush(self) -> None:
        self.out.flush(self.sock)

    def receive(self) -> list[tuple[Message, list[int]]] | None:
        """Messages (with their fds) now available; None once the forker closed the link."""
        try:
            data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 64, socket.MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            data, fds = b"", []
        self.fds.extend(fds)
        if not data:
            return None
        return [(message, self._fds_for(message)) for message in self.buffer.feed(data)]

    def _fds_for(self, message: Message) -> list[int]:
        if not isinstance(message, Started):
            return []
        return [self.fds.popleft() for _ in range(FDS_PER_WORKER)]

    def close(self) -> None:
        self.state = ForkerState.GONE
        while self.fds:
            os.close(self.fds.popleft())
        self.sock.close()


def without_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the CURVE secrets (and their ``_CMD``/``_SECRET`` forms): the gateway's own."""
    return {name: value for name, value in environ.items() if not name.upper().startswith(SECRET_VARIABLES)}


def forker_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the CURVE secrets (each masked with an empty value) or DB credentials."""
    withheld = SECRET_VARIABLES + DB_VARIABLES
    env = {name: value for name, value in environ.items() if not name.upper().startswith(withheld)}
    env.update(dict.fromkeys(SECRET_VARIABLES, ""))
    return env
