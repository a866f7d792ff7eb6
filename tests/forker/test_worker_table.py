"""WorkerTable with a fake clock: whatever order events arrive in, each worker gets exactly one exited."""

from __future__ import annotations

import itertools
import signal
from collections.abc import Callable

import pytest

from protocol import Exited, Outcome, WorkerReport
from zygote.forker.worker_table import Action, KillGroup, KillWorker, SendExited, Worker, WorkerTable

MiB = 2**20
LIMIT = 100 * MiB


def _table() -> WorkerTable:
    table = WorkerTable(cpu_limit_s=5)
    table.add(Worker("r1", 101, started_at=0.0, deadline_at=10.0, fork_ms=1.0, path="/dags/a.py"))
    return table


def _exited(actions: list[Action]) -> list[Exited]:
    return [action.message for action in actions if isinstance(action, SendExited)]


REPORT = WorkerReport(modules={"pandas": 0.5}, gc={"s": 0.01}, memory={"uss": 5 * MiB, "pss": 6 * MiB})
ENDING = WorkerReport(
    modules={"pandas": 0.5},
    gc={"s": 0.01},
    memory={"uss": 5 * MiB, "pss": 6 * MiB},
    ending={"exit_code": 0, "cpu_user_s": 0.2, "cpu_system_s": 0.05, "peak_rss": 90 * MiB},
)
EVENTS: dict[str, Callable[[WorkerTable], list[Action]]] = {
    "report": lambda t: t.record_report(101, REPORT, 1.0),
    "ending": lambda t: t.record_report(101, ENDING, 1.0),
    "small_sample": lambda t: t.sample_memory(101, 10 * MiB, 12 * MiB, LIMIT),
    "big_sample": lambda t: t.sample_memory(101, 200 * MiB, 210 * MiB, LIMIT),
    "client_kill": lambda t: t.request_signal("r1", signal.SIGTERM),
    "deadline": lambda t: t.expire(11.0),
    "drain_timeout": lambda t: t.kill_all(Outcome.DRAIN_TIMEOUT),
    "reaped": lambda t: t.reaped(101, -signal.SIGKILL, {"cpu_user_s": 0.1, "cpu_system_s": 0.0}, 12.0),
}
FIRST_KILL = {
    "big_sample": Outcome.MEMORY_LIMIT,
    "client_kill": Outcome.KILLED,
    "deadline": Outcome.DEADLINE,
    "drain_timeout": Outcome.DRAIN_TIMEOUT,
}


def test_every_interleaving_yields_exactly_one_exited() -> None:
    """All 40,320 orders of the eight events (plus a last reap): one exited, from what came first.

    A worker's ``ending`` answers for it unless a kill came first (then the reap names the kill);
    neither before the reap: the reap's signal.
    """
    for order in itertools.permutations(EVENTS):
        table = _table()
        sent = [message for name in (*order, "reaped") for message in _exited(EVENTS[name](table))]
        assert len(sent) == 1, order
        before_reap = order[: order.index("reaped")]
        first = next((name for name in before_reap if name in FIRST_KILL or name == "ending"), None)
        expected = Outcome.EXITED if first == "ending" else FIRST_KILL.get(first or "", Outcome.SIGNALED)
        assert sent[0].outcome == expected.value, order
        assert len(table) == 0


def test_an_ending_answers_before_the_reap_with_the_workers_own_usage() -> None:
    table = _table()
    [send] = table.record_report(101, ENDING, 2.5)
    assert isinstance(send, SendExited)
    assert (send.message.exit_code, send.message.outcome, send.message.note) == (0, Outcome.EXITED.value, "")
    stats = send.message.stats
    assert (stats["cpu_user_s"], stats["cpu_system_s"], stats["peak_rss"]) == (0.2, 0.05, 90 * MiB)
    assert (stats["wall_s"], stats["peak_uss"], stats["imports"]) == (2.5, 5 * MiB, {"pandas": 0.5})
    assert len(table) == 1  # still ours until reaped: its group is killed then, nothing more is sent
    assert table.next_deadline() is None
    assert table.request_signal("r1", signal.SIGKILL) == [KillWorker(101, signal.SIGKILL)]
    assert table.reaped(101, -signal.SIGKILL, {}, 3.0) == [KillGroup(101)]
    assert len(table) == 0


@pytest.mark.parametrize("code", [3, 126])
def test_an_ending_carries_the_code_the_worker_exits_with(code: int) -> None:
    report = WorkerReport(modules={}, gc={}, memory={}, ending={"exit_code": code})
    [send] = _table().record_report(101, report, 1.0)
    assert isinstance(send, SendExited)
    assert (send.message.exit_code, send.message.outcome) == (code, Outcome.FAILED.value)


def test_memory_note_names_the_limit_that_was_enforced() -> None:
    table = _table()
    assert table.sample_memory(101, 200 * MiB, 210 * MiB, LIMIT) == [KillWorker(101, signal.SIGKILL)]
    [_, send] = table.reaped(101, -signal.SIGKILL, {}, 1.0)
    assert isinstance(send, SendExited)
    assert send.message.note == "[airflow-zygote] killed: memory limit 100 MiB\n"
    assert send.message.stats["peak_uss"] == 200 * MiB


def test_deadline_note_quotes_the_wall_time() -> None:
    table = _table()
    assert table.expire(9.9) == []
    assert table.next_deadline() == 10.0
    assert table.expire(10.0) == [KillWorker(101, signal.SIGKILL)]
    assert table.next_deadline() is None  # a killing worker has no deadline left
    [group, send] = table.reaped(101, -signal.SIGKILL, {}, 12.5)
    assert group == KillGroup(101)
    assert isinstance(send, SendExited)
    assert send.message.outcome == Outcome.DEADLINE.value
    assert send.message.note == "[airflow-zygote] killed: zygote deadline reached after 12.5 s\n"


@pytest.mark.parametrize(
    ("exit_code", "cpu", "noted"),
    [(-signal.SIGXCPU, 5.0, True), (-signal.SIGKILL, 4.95, True), (-signal.SIGXCPU, 1.0, False), (1, 5.0, False)],
)
def test_cpu_note_only_when_the_worker_reached_its_cpu_limit(exit_code: int, cpu: float, noted: bool) -> None:
    table = _table()
    [_, send] = table.reaped(101, exit_code, {"cpu_user_s": cpu, "cpu_system_s": 0.0}, 1.0)
    assert isinstance(send, SendExited)
    assert (send.message.note == "[airflow-zygote] killed: CPU time limit 5 s\n") is noted


@pytest.mark.parametrize(("exit_code", "outcome"), [(0, Outcome.EXITED), (1, Outcome.FAILED), (-9, Outcome.SIGNALED)])
def test_outcome_of_a_worker_nobody_killed(exit_code: int, outcome: Outcome) -> None:
    [_, send] = _table().reaped(101, exit_code, {}, 1.0)
    assert isinstance(send, SendExited)
    assert send.message.outcome == outcome.value and send.message.note == ""


def test_report_fills_the_stats_and_signals_to_gone_workers_are_no_ops() -> None:
    table = _table()
    assert table.record_report(101, REPORT, 1.0) == []
    [_, send] = table.reaped(101, 0, {}, 2.0)
    assert isinstance(send, SendExited)
    assert send.message.stats["imports"] == {"pandas": 0.5}
    assert send.message.stats["gc_s"] == 0.01
    assert table.request_signal("r1", signal.SIGTERM) == []
    with pytest.raises(ValueError, match="already has a worker"):
        table.add(Worker("r2", 102, 0.0, 1.0, 1.0, "/x"))
        table.add(Worker("r2", 103, 0.0, 1.0, 1.0, "/x"))
