"""A child that floods its report socket costs the forker one bounded read per turn."""

from __future__ import annotations

import socket

from protocol import WorkerReport, frame
from zygote.forker.frames import TURN_BUDGET, ChildReader


def test_a_flood_is_read_in_bounded_turns_and_frames_survive_the_split() -> None:
    ours, child = socket.socketpair()
    ours.setblocking(False)
    child.setblocking(False)
    report = frame(WorkerReport(modules={f"m{i}": 0.0 for i in range(20000)}, gc={}, memory={}))
    assert len(report) > TURN_BUDGET
    child.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 2**20)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 2**20)
    sent = child.send(report)
    reader = ChildReader(ours)
    turns, messages = 0, []
    while sent < len(report) or not messages:
        turns += 1
        got = reader.read()
        messages += got
        if sent < len(report):
            sent += child.send(report[sent:])
        assert turns < 100
    assert turns >= 2 and reader.open
    assert messages == [WorkerReport(modules={f"m{i}": 0.0 for i in range(20000)}, gc={}, memory={})]
    child.close()
    assert reader.read() == [] and not reader.open


def test_garbage_closes_the_reader() -> None:
    ours, child = socket.socketpair()
    ours.setblocking(False)
    child.sendall(b"\xff" * 64)
    reader = ChildReader(ours)
    reader.read()
    assert not reader.open
