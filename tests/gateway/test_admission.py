"""Admission in the dispatcher: at most max_workers + max_queued accepted, refusals typed and at once."""

from __future__ import annotations

import select
from pathlib import Path
from typing import Any

from sent_messages import SentMessages

from protocol import Error, Message, Spawn
from zygote.config import Settings
from zygote.gateway.dispatcher import Dispatcher
from zygote.gateway.status import StatusBook


class _Pool:
    draining = False

    def __init__(self, serving: bool) -> None:
        self._serving = serving
        self.sent: list[Message] = []

    def serving(self) -> Any:
        return None if not self._serving else self

    generation = 1
    frozen = 0

    def send(self, message: Message) -> None:
        self.sent.append(message)


def _dispatcher(
    serving: bool = True, max_workers: int = 2, max_queued: int = 1, root: str = "/dags"
) -> tuple[Dispatcher, SentMessages]:
    sessions = SentMessages()
    settings = Settings(socket="ipc:///x", max_workers=max_workers, max_queued=max_queued)
    dispatcher = Dispatcher(settings, (root,), sessions, _Pool(serving), StatusBook())  # type: ignore[arg-type]
    return dispatcher, sessions


def _run_checks(dispatcher: Dispatcher) -> None:
    while dispatcher.checks.pending:
        select.select([dispatcher.checks.fileno()], [], [], 5)
        dispatcher.checks.run_callbacks()


def _spawn(request_id: str) -> Spawn:
    return Spawn(id=request_id, path="/dags/f.py", bundle_path="/dags", bundle_name="b", timeout=5.0, cwd="/")


def _errors(sessions: SentMessages) -> dict[str, str]:
    return {m.id: m.code for m in sessions.sent if isinstance(m, Error)}


def test_max_workers_plus_max_queued_are_accepted_and_the_next_is_overloaded() -> None:
    dispatcher, sessions = _dispatcher()
    try:
        for i in range(4):
            dispatcher.spawn(b"c", _spawn(f"s{i}"), {}, draining=False)
        assert _errors(sessions) == {"s3": "overloaded"}
        assert dispatcher.requests.waiting == 3
    finally:
        dispatcher.checks.close()


def test_no_ready_generation_is_not_ready_and_draining_is_shutting_down() -> None:
    dispatcher, sessions = _dispatcher(serving=False)
    try:
        dispatcher.spawn(b"c", _spawn("a"), {}, draining=False)
        dispatcher.spawn(b"c", _spawn("b"), {}, draining=True)
        assert _errors(sessions) == {"a": "not_ready", "b": "shutting_down"}
        assert len(dispatcher.requests) == 0
    finally:
        dispatcher.checks.close()


def test_load_counts_free_places_and_is_zero_when_not_ready() -> None:
    dispatcher, _ = _dispatcher(max_workers=2, max_queued=1)
    try:
        dispatcher.spawn(b"c", _spawn("a"), {}, draining=False)
        load = dispatcher.load(draining=False)
        assert (load["ready"], load["free"], load["queued"], load["generation"]) == (True, 2, 1, 1)
        assert dispatcher.load(draining=True)["free"] == 0
    finally:
        dispatcher.checks.close()


def test_a_checked_spawn_goes_to_the_forker_with_the_session_process_and_a_bad_path_is_rejected(
    tmp_path: Path,
) -> None:
    dispatcher, sessions = _dispatcher(root=str(tmp_path))
    (tmp_path / "f.py").write_text("")
    good = Spawn(
        id="good", path=str(tmp_path / "f.py"), bundle_path=str(tmp_path), bundle_name="b", timeout=0.0, cwd="/"
    )
    try:
        dispatcher.spawn(b"c", good, {"env": {"A": "1"}}, draining=False)
        dispatcher.spawn(b"c", _spawn("bad"), {}, draining=False)
        _run_checks(dispatcher)
        assert _errors(sessions) == {"bad": "rejected_path"}
        (forwarded,) = dispatcher.pool.sent  # type: ignore[attr-defined]
        assert forwarded.process == {"env": {"A": "1"}} and forwarded.id.startswith("r")
        assert forwarded.timeout == dispatcher.settings.worker_timeout, "a non-positive timeout gets the ceiling"
        (request,) = dispatcher.requests.live()
        assert request.spawn.process == {}, "the gateway forgets the environment once the forker has it"
    finally:
        dispatcher.checks.close()
