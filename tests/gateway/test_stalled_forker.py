"""The dispatcher while its forker owes answers: queued requests and finished workers wait for nothing.

A real zombie child of this process stands in for a worker whose forker (here: this process) is
stopped; the pool is a stub that only names the forker's pid and takes what is sent to it.
"""

from __future__ import annotations

import os
import select
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sent_messages import SentMessages
from unreaped import unreaped_child

from protocol import CHANNELS, Error, Exited, Message, Spawn, Started
from zygote.config import Settings
from zygote.gateway.dispatcher import FORKER_STALL_S, Dispatcher
from zygote.gateway.status import StatusBook


class _Forker:
    """The serving generation: this process plays the forker that does not answer."""

    draining = False
    generation = 1
    frozen = 0
    pid = os.getpid()

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def serving(self) -> Any:
        return self

    def by_generation(self, generation: int) -> Any:
        return self if generation == self.generation else None

    def send(self, message: Message) -> None:
        self.sent.append(message)


def test_a_stall_ends_the_queue_and_answers_a_finished_worker_once(tmp_path: Path) -> None:
    (tmp_path / "f.py").write_text("")
    sessions, forker, book = SentMessages(), _Forker(), StatusBook()
    settings = Settings(socket="ipc:///x", max_workers=1, max_queued=1)
    dispatcher = Dispatcher(settings, (str(tmp_path),), sessions, forker, book)  # type: ignore[arg-type]
    spawn = Spawn(id="", path=str(tmp_path / "f.py"), bundle_path=str(tmp_path), bundle_name="b", timeout=5.0, cwd="/")
    pid = unreaped_child(3)
    try:
        for request_id in ("running", "queued"):
            dispatcher.spawn(b"c", replace(spawn, id=request_id), {}, draining=False)
        while dispatcher.checks.pending:
            select.select([dispatcher.checks.fileno()], [], [], 5)
            dispatcher.checks.run_callbacks()
        [sent_spawn] = forker.sent
        pairs = [socket.socketpair() for _ in CHANNELS]
        dispatcher.worker_started(
            Started(id=sent_spawn.id, pid=pid, generation=1, fork_ms=1.0), [a.detach() for a, _ in pairs]
        )
        request = dispatcher.requests.by_internal(sent_spawn.id)
        assert request is not None
        queued = ({"running", "queued"} - {request.spawn.id}).pop()  # path checks finish in any order
        now = time.monotonic()
        dispatcher.on_stall(now + 10 * FORKER_STALL_S)
        assert not [m for m in sessions.sent if isinstance(m, (Exited, Error))], "nothing owed yet: no stall"
        for _, peer in pairs:
            peer.close()
        for channel in CHANNELS:
            dispatcher.relay_event(request, channel, readable=True, writable=False)
        ended = request.channels_ended_at
        assert ended > 0 and dispatcher.stall_deadline() == ended + FORKER_STALL_S

        dispatcher.on_stall(ended + FORKER_STALL_S / 2)
        assert not [m for m in sessions.sent if isinstance(m, (Exited, Error))], "not owed long enough"
        dispatcher.on_stall(ended + FORKER_STALL_S)
        terminals = [m for m in sessions.sent if isinstance(m, (Exited, Error))]
        assert [(type(m).__name__, m.id) for m in terminals] == [("Error", queued), ("Exited", request.spawn.id)]
        assert terminals[0].code == "not_ready"
        answer = terminals[1]
        assert (answer.exit_code, answer.outcome) == (3, "failed")
        assert set(answer.stats) == {"pid", "wall_s", "output_dropped"} and answer.stats["pid"] == pid
        assert dispatcher.requests.running == 1, "the slot stays the forker's until it answers"

        dispatcher.worker_exited(Exited(id=sent_spawn.id, exit_code=3, outcome="failed", stats={"peak_uss": 5}))
        assert [m for m in sessions.sent if isinstance(m, Exited)] == [answer], "the late exited is dropped"
        assert dispatcher.requests.running == 0 and len(dispatcher.requests) == 0
        assert dispatcher.stalled_for(time.monotonic()) == 0.0
        assert book.parse_s.summary()["count"] == 1 and book.peak_uss.summary() == {"count": 0}
    finally:
        os.waitpid(pid, 0)
        dispatcher.checks.close()
