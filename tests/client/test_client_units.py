"""Fast tests of the client's pure parts: ledger, admission, session states, warnings, the relay's ordering rule.

The relay is driven with real local socketpairs (the ones the manager would read) and the protocol
messages the gateway would send; what it sends back is collected instead of going over ZeroMQ.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any

import psutil
import pytest
import zmq

from protocol import Credit, Error, Exited, Input, Message, Output, Signal, Spawn, Started
from zygote.client.channels import LocalChannels
from zygote.client.ledger import Ledger, LedgerError
from zygote.client.notes import FallbackNotes
from zygote.client.relay import ClientRequest, Relay
from zygote.client.session import Availability, IllegalTransition, Session, SessionState, admit
from zygote.client.tracker import RemoteTracker
from zygote.config import Settings

# --- ledger ------------------------------------------------------------------------------------


def test_ledger_keeps_counters_forever_and_only_a_window_of_entries() -> None:
    ledger = Ledger(window=3)
    for index in range(10):
        ledger.open(f"r{index}", f"/dags/{index}.py")
        ledger.close(f"r{index}", "exited" if index % 2 else "failed", exit_code=index % 2)
    assert ledger.counts() == {"exited": 5, "failed": 5}
    assert [entry.request_id for entry in ledger.entries] == ["r7", "r8", "r9"]
    assert not ledger.open_ids


def test_ledger_window_none_keeps_everything_and_record_is_one_step() -> None:
    ledger = Ledger(window=None)
    for index in range(300):
        ledger.record(f"r{index}", "/dags/a.py", "zygote_unavailable", "down")
    assert len(ledger.entries) == 300
    assert ledger.counts() == {"zygote_unavailable": 300}


def test_ledger_refuses_double_open_and_double_close() -> None:
    ledger = Ledger()
    ledger.open("r1", "/dags/a.py")
    with pytest.raises(LedgerError):
        ledger.open("r1", "/dags/a.py")
    ledger.close("r1", "exited")
    with pytest.raises(LedgerError):
        ledger.close("r1", "exited")


# --- admission and session states --------------------------------------------------------------

NOW = 1000.0


def _ready(**overrides: Any) -> Availability:
    return Availability(**{"state": SessionState.READY, "last_recv": NOW - 0.1, **overrides})


def test_admission_is_remote_when_ready_heard_from_and_free() -> None:
    assert admit(_ready(free=2), 1, NOW).remote
    assert admit(_ready(), 100, NOW).remote  # a gateway that sends no load is never counted down


@pytest.mark.parametrize(
    ("availability", "sent", "kind"),
    [
        (Availability(state=SessionState.DOWN, why="refused"), 0, "zygote_unavailable"),
        (Availability(state=SessionState.CONNECTING), 0, "zygote_unavailable"),
        (Availability(state=SessionState.READY, last_recv=NOW - 10, silent_after=3.0), 0, "zygote_unavailable"),
        (Availability(state=SessionState.READY, last_recv=NOW, ready=False), 0, "not_ready"),
        (Availability(state=SessionState.READY, last_recv=NOW, free=2), 2, "overloaded"),
    ],
)
def test_admission_refuses_at_once(availability: Availability, sent: int, kind: str) -> None:
    decision = admit(availability, sent, NOW)
    assert (decision.remote, decision.kind) == (False, kind)


def test_session_transitions_live_in_one_table_and_an_illegal_one_changes_nothing() -> None:
    context: zmq.Context[Any] = zmq.Context()
    try:
        session = Session(Settings(socket="ipc:///nonexistent/zygote.sock"), context, _hello())
        assert session.state is SessionState.DOWN
        with pytest.raises(IllegalTransition):
            session._move(SessionState.READY)
        assert session.state is SessionState.DOWN
        assert session.availability.state is SessionState.DOWN
    finally:
        context.term()


def test_a_refusal_is_believed_until_the_next_load() -> None:
    context: zmq.Context[Any] = zmq.Context()
    try:
        session = Session(Settings(socket="ipc:///nonexistent/zygote.sock"), context, _hello())
        epoch = session.availability.epoch
        session.note_refusal("not_ready", NOW)
        blocked = session.availability
        assert blocked.blocked == "not_ready" and blocked.epoch > epoch
        ready = Availability(**{**blocked.__dict__, "state": SessionState.READY, "last_recv": NOW})
        assert admit(ready, 0, NOW).kind == "not_ready"
        later = blocked.blocked_until + 0.1
        assert admit(ready, 0, later).remote  # half-open: one probe
        assert admit(ready, 1, later).kind == "not_ready"  # and only one
        session.note_started()
        assert session.availability.blocked == ""
    finally:
        context.term()


def test_silence_counts_only_while_the_client_ran_a_frozen_client_gives_the_zygote_a_fresh_window() -> None:
    context: zmq.Context[Any] = zmq.Context()
    try:
        settings = Settings(socket="ipc:///nonexistent/zygote.sock", heartbeat_timeout=5.0)
        session = Session(settings, context, _hello())
        session.state, session._last_recv = SessionState.READY, NOW
        session.on_timers(NOW + 1.0)
        session.on_timers(NOW + 31.0)  # the dag-processor was SIGSTOPped for 30 s: nothing was read meanwhile
        assert session.lost is None and session.availability.last_recv == NOW + 31.0
        for second in range(32, 37):  # awake, ticking, and still nothing from the zygote: now it is lost
            session.on_timers(NOW + second + 0.5)
        assert session.lost is not None and "no traffic" in session.lost[0]
    finally:
        context.term()


def _hello() -> Any:
    from protocol import Hello

    return Hello(client="t", role="client", protocol=1, airflow="x", python="3.11")


# --- one warning per outage, per kind ----------------------------------------------------------


def test_fallback_warns_once_per_outage_and_again_after_the_zygote_came_back() -> None:
    notes = FallbackNotes()
    assert notes.first("zygote_unavailable")
    assert not notes.first("zygote_unavailable")
    assert notes.first("not_ready")  # another kind of reason warns once too
    notes.available()
    assert notes.first("zygote_unavailable")  # unavailable -> available -> unavailable: twice
    assert notes.counts["zygote_unavailable"] == 3


def test_a_per_file_refusal_warns_once_while_the_zygote_stays_available() -> None:
    notes = FallbackNotes()
    assert notes.first("rejected_path")
    notes.available()
    assert not notes.first("rejected_path")
    assert notes.counts["rejected_path"] == 2


# --- the relay's ordering rule -----------------------------------------------------------------


class Harness:
    """One relay with one request; ``sent`` is what would go to the gateway."""

    def __init__(self, fallback: str = "fail", first_input: bytes = b"", early_input: bool = False) -> None:
        self.sent: list[Message] = []
        self.signals: list[tuple[str, int]] = []
        self.ledger = Ledger()
        self.relay = Relay(self.ledger, self._send, FallbackNotes(), fallback, self._no_local)
        self.channels = LocalChannels.create()
        self.tracker = RemoteTracker("r1", lambda rid, signum: self.signals.append((rid, signum)))
        spawn = Spawn(id="r1", path="/dags/a.py", bundle_path="/dags", bundle_name="b", timeout=30.0, cwd="/")
        self.request = ClientRequest(spawn, self.channels, self.tracker, answer_by=NOW + 5, first_input=first_input)
        self.relay.add(self.request, NOW, ready=True, early_input=early_input)

    def _send(self, message: Message) -> bool:
        self.sent.append(message)
        return True

    @staticmethod
    def _no_local(channels: LocalChannels, others: Any) -> int:
        raise OSError("no local children in unit tests")

    def read_parent(self, name: str) -> bytes:
        sock = self.channels.parent[name]
        sock.settimeout(1.0)
        chunks = []
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def exited(self) -> bool:
        try:
            self.tracker.wait(0)
        except psutil.TimeoutExpired:
            return False
        return True


@pytest.mark.parametrize("early_input", [True, False], ids=["gateway_holds_it", "older_gateway"])
def test_the_first_frame_goes_once_with_the_spawn_or_after_started(early_input: bool) -> None:
    """Sent early only to a gateway that holds it; either way the worker gets the frame exactly once."""
    frame, later = b"\x00\x00\x00\x03abc", b"\x00\x00\x00\x02ok"
    h = Harness(first_input=frame, early_input=early_input)
    h.channels.parent["requests"].sendall(frame)  # what the manager writes, for a local child
    assert [type(m) for m in h.sent] == ([Spawn, Input] if early_input else [Spawn])
    h.relay.on_message(Started(id="r1", pid=4242, generation=1, fork_ms=1.0))
    h.channels.parent["requests"].sendall(later)  # the manager's answer to the worker's first request
    for _ in range(2):
        h.relay.read_local(h.request)
    assert b"".join(m.data for m in h.sent if isinstance(m, Input)) == frame + later


def test_bytes_arrive_before_the_exit_status_and_eof_comes_after_it() -> None:
    h = Harness()
    h.relay.on_message(Started(id="r1", pid=4242, generation=1, fork_ms=1.0))
    assert h.tracker.pid == 4242
    h.relay.on_message(Output(id="r1", channel="stdout", data=b"hello "))
    h.relay.on_message(Output(id="r1", channel="stdout", data=b"world"))
    assert not h.exited()
    h.relay.on_message(Exited(id="r1", exit_code=0, outcome="exited"))
    assert h.tracker.wait(0) == 0
    assert h.read_parent("stdout") == b"hello world"  # then EOF: the local ends are closed
    [entry] = h.ledger.entries
    assert (entry.outcome, entry.exit_code) == ("exited", 0)
    assert sum(m.size for m in h.sent if isinstance(m, Credit)) + _owed(h) == len(b"hello world")


def _owed(h: Harness) -> int:
    return h.request.owed_credit


def test_the_exit_waits_while_the_manager_has_not_read_everything() -> None:
    h = Harness()
    h.relay.on_message(Started(id="r1", pid=1, generation=1, fork_ms=1.0))
    big = b"x" * (4 << 20)  # more than a socketpair buffers
    for offset in range(0, len(big), 1 << 20):
        h.relay.on_message(Output(id="r1", channel="logs", data=big[offset : offset + (1 << 20)]))
    h.relay.on_message(Exited(id="r1", exit_code=-9, outcome="signaled"))
    assert h.request.has_pending() and not h.exited()
    received = bytearray()
    parent = h.channels.parent["logs"]
    parent.setblocking(False)
    while not h.exited():
        with contextlib.suppress(BlockingIOError):
            received += parent.recv(1 << 20)
        h.relay.flush(h.request, "logs")
    assert h.tracker.wait(0) == -signal.SIGKILL
    parent.setblocking(True)
    received += h.read_parent("logs")
    assert bytes(received) == big


def test_a_started_request_that_loses_its_zygote_ends_failed_with_a_line_in_the_log() -> None:
    h = Harness()
    h.relay.on_message(Started(id="r1", pid=1, generation=1, fork_ms=1.0))
    h.relay.lose_all("no traffic from the zygote for 15 s")
    assert h.tracker.wait(0) == 1
    assert b"parse ended without a result: zygote_unavailable" in h.read_parent("stderr")
    assert h.ledger.counts() == {"zygote_unavailable": 1}


def test_a_refusal_before_started_under_fail_is_not_a_parse() -> None:
    h = Harness(fallback="fail")
    h.relay.on_message(Error(id="r1", code="not_ready", message="no forker generation is ready"))
    assert h.tracker.wait(0) == 1 and h.tracker.not_started
    assert b"parse not started: not_ready" in h.read_parent("stderr")
    [entry] = h.ledger.entries
    assert entry.outcome == "not_ready"


def test_a_request_killed_while_waiting_is_not_started_elsewhere() -> None:
    h = Harness(fallback="local")
    h.tracker.send_signal(signal.SIGKILL)
    assert h.signals == [("r1", signal.SIGKILL)]
    h.relay.on_message(Error(id="r1", code="overloaded", message="queue full"))
    assert h.tracker.wait(0) == -signal.SIGKILL


def test_a_request_not_started_in_time_is_abandoned_and_killed_if_it_starts_later() -> None:
    h = Harness()
    h.relay.expire(NOW + 6)
    assert h.tracker.wait(0) == 1
    assert Signal(id="r1", signum=signal.SIGKILL) in h.sent
    h.sent.clear()
    h.relay.on_message(Started(id="r1", pid=7, generation=1, fork_ms=1.0))
    h.relay.on_message(Output(id="r1", channel="stdout", data=b"late"))
    assert h.sent == [Signal(id="r1", signum=signal.SIGKILL), Credit(id="r1", size=4)]
    h.relay.on_message(Exited(id="r1", exit_code=-9, outcome="killed"))
    assert not h.relay.abandoned
    assert h.ledger.counts() == {"zygote_unavailable": 1}


def test_a_zygote_kill_note_goes_into_the_files_log_before_the_exit() -> None:
    h = Harness()
    h.relay.on_message(Started(id="r1", pid=1, generation=1, fork_ms=1.0))
    h.relay.on_message(Exited(id="r1", exit_code=-9, outcome="memory_limit", note="killed: memory limit 64 MiB"))
    assert h.tracker.wait(0) == -signal.SIGKILL
    assert h.read_parent("stderr") == b"[airflow-zygote] killed: memory limit 64 MiB\n"
