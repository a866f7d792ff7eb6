"""Preload by value and promotion rounds: the pure decisions, with no forker and no probe child."""

from __future__ import annotations

import gc
import json
import selectors
import sys
from pathlib import Path

import pytest

from protocol import ProbeReport
from zygote import linux
from zygote.forker.preload import ApprovedPatterns, ModuleState, Preloader, ProbeBounds
from zygote.forker.probe import ProbeRunner
from zygote.forker.promotion import MIN_PARSES, RoundClock, Usage, judge
from zygote.forker.verdicts import TEST_FORK

MIB = 2**20
CLEAN_FORK = ProbeReport(module=TEST_FORK, ok=True, reason="", import_s=0.0, memory_delta=0)


def _verified(preloader: Preloader, name: str, memory_delta: int) -> None:
    preloader.on_probe_report(ProbeReport(module=name, ok=True, reason="", import_s=0.01, memory_delta=memory_delta))


def test_value_is_share_of_parses_times_import_time_and_cost_is_memory_beyond_the_noise_floor() -> None:
    usage = Usage()
    for seconds in (0.3, 0.5):
        usage.add(seconds)
    worth = judge(usage, total_parses=40, memory_delta=21 * MIB, cost_per_mib_ms=0.5)
    assert worth.saves_ms == pytest.approx(2 / 40 * 400)  # 20 ms a parse
    assert worth.costs_ms == pytest.approx(20 * 0.5)  # the first MiB is noise
    assert worth.promote
    assert worth.explain() == "saves 20.00 ms a parse, costs 10.00 ms"


def test_a_module_imported_rarely_or_cheaply_is_not_worth_its_memory() -> None:
    once = Usage()
    once.add(0.2)
    rare = judge(once, total_parses=1000, memory_delta=50 * MIB, cost_per_mib_ms=0.05)
    assert not rare.promote and rare.explain().startswith("would save 0.20 ms a parse")
    cheap = Usage(parses=1000, import_s=1000 * 0.001)
    assert not judge(cheap, total_parses=1000, memory_delta=30 * MIB, cost_per_mib_ms=0.05).promote
    # Small and cheap costs nothing either: it comes along for free.
    assert judge(cheap, total_parses=1000, memory_delta=MIB // 2, cost_per_mib_ms=0.05).promote


def test_the_first_parses_do_not_make_a_module_look_universal() -> None:
    first = Usage()
    first.add(1.0)
    assert judge(first, 1, 0, 0.05).saves_ms == pytest.approx(1000 / MIN_PARSES)


def test_round_clock_allows_one_round_per_interval() -> None:
    clock = RoundClock(5.0)
    assert clock.is_due(0.0)  # the first round may start at once
    clock.ended(10.0)
    assert not clock.is_due(14.9) and clock.due_at() == 15.0 and clock.is_due(15.0)
    assert clock.rounds == 1


@pytest.fixture
def frozen_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # The test process may run threads of earlier tests; a real forker has one (tests/e2e cover the check).
    monkeypatch.setattr(linux, "native_thread_count", lambda: 1)
    monkeypatch.setattr(gc, "freeze", gc.collect)  # do not freeze pytest's own heap


def _seen_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> Preloader:
    """A preloader whose one approved module, a tiny file, one parse imported in 10 ms."""
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    preloader = Preloader(ApprovedPatterns(["zt_pv_*"]), [], "", cost_per_mib_ms=0.05)
    preloader.observe_parse({name: 0.01})
    return preloader


def _package(root: Path, name: str) -> None:
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text(f"from {name} import inner\n")
    (package / "inner.py").write_text("VALUE = 1\n")


@pytest.mark.usefixtures("frozen_nothing")
def test_worthy_modules_are_promoted_and_bring_their_submodules_the_rest_wait_with_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("zt_pv_big", "zt_pv_rare"):
        _package(tmp_path, name)
        monkeypatch.delitem(sys.modules, name, raising=False)
        monkeypatch.delitem(sys.modules, f"{name}.inner", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    preloader = Preloader(ApprovedPatterns(["zt_pv_*"]), [], str(tmp_path / "state.json"), cost_per_mib_ms=0.05)
    for _ in range(20):  # every parse imports the big one, and its submodule (cheap in itself)
        preloader.observe_parse({"zt_pv_big": 0.8, "zt_pv_big.inner": 0.0001, "json": 0.01})
    preloader.observe_parse({"zt_pv_rare": 0.05, "zt_pv_rare.inner": 0.0})

    batch = preloader.take_batch()
    assert batch == ["zt_pv_big", "zt_pv_big.inner", "zt_pv_rare", "zt_pv_rare.inner"]
    _verified(preloader, "zt_pv_big", 100 * MIB)
    _verified(preloader, "zt_pv_big.inner", 40 * MIB)  # measured after its parent: misleading alone
    _verified(preloader, "zt_pv_rare", 60 * MIB)
    _verified(preloader, "zt_pv_rare.inner", 0)
    assert preloader.on_probe_end(batch, "", CLEAN_FORK) == []

    # zt_pv_rare: 1/21 of the parses x 50 ms = 2.4 ms against 59 MiB x 0.05 = 2.95 ms; its submodule
    # alone would cost nothing but would import the package: it waits with it.
    assert preloader.promote(preloader.worth_promoting()) == ["zt_pv_big", "zt_pv_big.inner"]
    status = preloader.status()
    assert status["zt_pv_big"]["state"] == "loaded" and status["zt_pv_big"]["parses"] == 20
    assert status["zt_pv_big"]["saves_ms"] == pytest.approx(20 / 21 * 800, abs=0.001)
    assert status["zt_pv_big"]["costs_ms"] == pytest.approx(4.95)
    assert status["zt_pv_rare"]["state"] == "verified"
    assert status["zt_pv_rare"]["reason"] == "not worth holding yet: would save 2.38 ms a parse, costs 2.95 ms"
    assert status["zt_pv_rare.inner"]["reason"] == "not worth holding yet: its package zt_pv_rare is not"
    assert "zt_pv_rare" not in sys.modules
    assert status["zt_pv_big.inner"]["state"] == "loaded"
    assert "json" not in status  # not approved


@pytest.mark.usefixtures("frozen_nothing")
def test_a_module_not_worth_it_stays_verified_until_parses_make_it_worth_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    preloader = _seen_once(tmp_path, monkeypatch, "zt_pv_grows")
    for _ in range(99):
        preloader.observe_parse({})
    _verified(preloader, "zt_pv_grows", 81 * MIB)  # costs 4 ms a parse; saves 0.1 ms
    preloader.take_batch()
    preloader.on_probe_report(
        ProbeReport(module="zt_pv_grows", ok=True, reason="", import_s=0.01, memory_delta=81 * MIB)
    )
    assert preloader.promote(preloader.worth_promoting()) == []
    record = preloader.records["zt_pv_grows"]
    assert record.state is ModuleState.VERIFIED
    assert record.reason == "not worth holding yet: would save 0.10 ms a parse, costs 4.00 ms"
    assert "zt_pv_grows" not in sys.modules

    for _ in range(100):  # now every parse imports it
        preloader.observe_parse({"zt_pv_grows": 0.01})
    assert preloader.worth_promoting() == ["zt_pv_grows"]
    assert preloader.promote(preloader.worth_promoting()) == ["zt_pv_grows"]


def test_chosen_modules_are_promoted_whatever_their_worth(tmp_path: Path) -> None:
    preloader = Preloader(ApprovedPatterns(["zt_pv_*"]), [], "")
    preloader.observe(["zt_pv_state_file"])
    preloader.take_batch()
    _verified(preloader, "zt_pv_state_file", 500 * MIB)
    assert preloader.worth_promoting() == ["zt_pv_state_file"]


def test_a_round_retries_the_rest_of_a_batch_after_a_culprit(tmp_path: Path) -> None:
    preloader = Preloader(ApprovedPatterns(["zt_*"]), [], "")
    preloader.observe_parse({"zt_a": 0.1, "zt_b": 0.1, "zt_c": 0.1})
    round_ = preloader.take_batch()
    preloader.on_probe_report(ProbeReport(module="zt_a", ok=True, reason="", import_s=0.1, memory_delta=0))
    preloader.on_probe_report(
        ProbeReport(
            module="zt_b",
            ok=False,
            reason="left 1 thread(s) running after import",
            import_s=0.1,
            memory_delta=0,
            kind="thread",
        )
    )
    preloader.on_probe_end(round_, "", CLEAN_FORK)
    preloader.observe_parse({"zt_late": 0.1})  # reported meanwhile: waits for the next round
    assert preloader.take_batch(round_) == ["zt_c"]
    assert preloader.records["zt_a"].state is ModuleState.VERIFIED
    assert preloader.records["zt_late"].state is ModuleState.PENDING


def test_library_faults_found_by_a_probe_are_remembered_host_limits_are_not(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    preloader = Preloader(ApprovedPatterns(["zt_*"]), [], str(state))
    preloader.observe_parse({"zt_thread": 0.1, "zt_huge": 0.1})
    batch = preloader.take_batch()
    for name, reason, kind in (
        ("zt_thread", "left 1 thread(s) running after import", "thread"),
        ("zt_huge", "import added 2000 MiB, over 1024 MiB", "memory"),
    ):
        report = ProbeReport(module=name, ok=False, reason=reason, import_s=0.1, memory_delta=0, kind=kind)
        preloader.on_probe_report(report)
    preloader.on_probe_end(batch, "")
    assert preloader.promote(preloader.worth_promoting()) == []
    assert json.loads(state.read_text())["rejected"] == {
        "zt_thread": {"kind": "thread", "reason": "left 1 thread(s) running after import"}
    }

    restarted = Preloader(ApprovedPatterns(["zt_*"]), [], str(state))
    restarted.observe_parse({"zt_thread": 0.1, "zt_huge": 0.1})
    assert restarted.take_batch() == ["zt_huge"]  # the thread starter is not probed again
    assert restarted.records["zt_thread"].reason == "left 1 thread(s) running after import (remembered)"


@pytest.mark.usefixtures("frozen_nothing")
def test_a_round_with_nothing_to_probe_judges_worth_once_and_promotes_what_grew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    preloader = _seen_once(tmp_path, monkeypatch, "zt_pv_later")
    preloader.take_batch()
    _verified(preloader, "zt_pv_later", 81 * MIB)
    preloader.on_probe_end(["zt_pv_later"], "", CLEAN_FORK)
    runner = ProbeRunner(preloader, ProbeBounds(1.0, 0), selectors.DefaultSelector(), interval_s=5.0)
    judged = []
    worth_promoting = preloader.worth_promoting
    monkeypatch.setattr(preloader, "worth_promoting", lambda: judged.append(1) or worth_promoting())
    assert runner.maybe_start(0.0) == []  # not worth it yet (costs 4 ms, saves 0.1 ms)
    assert len(judged) == 1
    for _ in range(100):
        preloader.observe_parse({"zt_pv_later": 0.01})
    assert runner.maybe_start(1.0) == ["zt_pv_later"]
    assert len(judged) == 2  # once for the round that promoted it, not again inside the promotion
    assert runner.clock.rounds == 1
