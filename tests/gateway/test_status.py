"""StatusBook: the report is built from a snapshot of plain values; health needs the forker's part."""

from __future__ import annotations

from typing import Any

from protocol import Exited
from zygote.gateway.status import GatewaySnapshot, StatusBook, StatusWaits


def _snapshot(serving: bool = True) -> GatewaySnapshot:
    return GatewaySnapshot(
        versions={"protocol": 1},
        gateway={"pid": 1, "clients": 2},
        serving=serving,
        current={"pid": 10, "state": "ready"} if serving else None,
        generation=3,
        generations=[{"generation": 3, "pid": 10, "state": "ready"}],
        workers={"running": 1, "queued": 0, "max": 4},
    )


def test_healthy_needs_a_serving_generation_and_a_single_threaded_forker() -> None:
    book = StatusBook()
    forker = {"forker": {"threads": 1, "pid": 10}}
    assert book.assemble(_snapshot(), forker)["healthy"] is True
    assert book.assemble(_snapshot(serving=False), forker)["healthy"] is False
    assert book.assemble(_snapshot(), {"forker": {"threads": 2}})["healthy"] is False
    report = book.assemble(_snapshot(), None)
    assert report["healthy"] is False
    assert report["forker"] == {"pid": 10, "generation": 3, "threads": None, "frozen_objects": None, "state": "ready"}


def test_outcomes_and_samples_are_counted() -> None:
    book = StatusBook()
    book.finished(Exited(id="a", exit_code=0, outcome="exited", stats={"wall_s": 0.5, "peak_uss": 10}))
    book.count("rejected_path")
    report = book.assemble(_snapshot(), {"forker": {"threads": 1}})
    assert report["requests"] == {"exited": 1, "rejected_path": 1}
    assert report["parse_s"]["count"] == 1 and report["workers"] == {"running": 1, "queued": 0, "max": 4, "pooled": 0}


def test_status_waits_answer_once_or_expire() -> None:
    waits, replies = StatusWaits(), []

    def reply(client: bytes, request_id: str, status: dict[str, Any] | None) -> None:
        replies.append((client, request_id, status))

    first = waits.add(b"c", "s-1", deadline=5.0)
    waits.add(b"c", "s-2", deadline=2.0)
    assert waits.next_deadline() == 2.0
    waits.answered(first, {"x": 1}, reply)
    waits.answered(first, {"x": 2}, reply)
    waits.expire(3.0, reply)
    assert replies == [(b"c", "s-1", {"x": 1}), (b"c", "s-2", None)]
    assert waits.next_deadline() is None


def test_a_zygote_that_refuses_nearly_every_recent_spawn_is_not_healthy() -> None:
    now = [1000.0]
    book = StatusBook(clock=lambda: now[0])
    forker = {"forker": {"threads": 1}}
    for _ in range(9):
        book.count("rejected_path")
    book.finished(Exited(id="a", exit_code=0, outcome="exited"))
    book.count("client_gone")
    report = book.assemble(_snapshot(), forker)
    assert report["healthy"] is False
    assert "9 of the last 10 spawns were refused" in report["reason"]
    assert report["recent"]["refused"] == {"rejected_path": 9}
    now[0] += 301.0
    report = book.assemble(_snapshot(), forker)
    assert report["healthy"] is True and report["reason"] == "" and report["recent"]["spawns"] == 0
    assert report["requests"]["rejected_path"] == 9, "all-time counters stay"


def test_fork_failures_count_as_refusals() -> None:
    book = StatusBook()
    book.count("fork_failed")
    assert book.recent_summary()["refused"] == {"fork_failed": 1}
