"""The four local socketpairs a stock parse child would have had.

The manager gets the ``parent`` ends, registered in its selector exactly as
``WatchedSubprocess.start`` registers them. The relay thread owns the ``child`` ends and moves
bytes between them and the zygote, so Airflow's decoder, request handler and log forwarding run
unchanged.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

LOCAL_CHANNELS = ("requests", "stdout", "stderr", "logs")


@dataclass
class LocalChannels:
    parent: dict[str, socket.socket]
    child: dict[str, socket.socket]

    @classmethod
    def create(cls) -> LocalChannels:
        parent: dict[str, socket.socket] = {}
        child: dict[str, socket.socket] = {}
        for name in LOCAL_CHANNELS:
            child[name], parent[name] = socket.socketpair()
            child[name].setblocking(False)
        return cls(parent, child)

    def close_child(self, name: str) -> None:
        sock = self.child.pop(name, None)
        if sock is not None:
            sock.close()

    def close_children(self) -> None:
        for name in list(self.child):
            self.close_child(name)

    def close_all(self) -> None:
        self.close_children()
        for sock in self.parent.values():
            sock.close()
