"""Preloader decisions and approved-pattern matching, without a forker (the state file is real)."""

from __future__ import annotations

import gc
import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from protocol import Message, ProbeReport
from zygote import linux
from zygote.forker.frames import ChildReader, reap_blocking
from zygote.forker.preload import NOT_APPROVED, ApprovedPatterns, ModuleState, Preloader, ProbeBounds
from zygote.forker.probe import _probe_all
from zygote.forker.verdicts import TEST_FORK, Fault

LIBS = Path(__file__).resolve().parents[1] / "e2e" / "preload_libs"


@pytest.mark.parametrize(
    ("pattern", "module", "matches"),
    [
        ("pandas", "pandas", True),
        ("pandas", "pandas.core.frame", True),
        ("pandas", "pandasx", False),
        ("mycompany.*", "mycompany", True),
        ("mycompany.*", "mycompany.etl", True),
        ("mycompany.*", "mycompanyx", False),
        ("google.cloud.big*", "google.cloud.bigquery", True),
        ("google.cloud.big*", "google.cloud.storage", False),
        ("zt_?", "zt_a", True),
    ],
)
def test_approved_patterns(pattern: str, module: str, matches: bool) -> None:
    assert ApprovedPatterns([pattern]).matches(module) is matches


def test_patterns_ignore_blanks_and_duplicates_and_airflow_is_always_approved() -> None:
    patterns = ApprovedPatterns.with_airflow([" pandas ", "", "pandas"])
    assert patterns.patterns[:2] == ("pandas", "airflow")
    assert patterns.matches("airflow.providers.standard.operators.bash")


def _report(module: str, ok: bool, reason: str = "", kind: str = "") -> ProbeReport:
    return ProbeReport(module=module, ok=ok, reason=reason, import_s=0.1, memory_delta=1024, kind=kind)


def test_lifecycle_observe_probe_reject_and_requeue(tmp_path: Path) -> None:
    preloader = Preloader(ApprovedPatterns(["zt_*"]), [], str(tmp_path / "state.json"))
    preloader.observe(["zt_a", "zt_b", "zt_c", "not_approved", "json"])
    assert preloader.take_batch() == ["zt_a", "zt_b", "zt_c"]
    assert not preloader.has_pending()
    preloader.on_probe_report(_report("zt_a", ok=False, reason="left 1 thread(s) running after import", kind="thread"))
    preloader.on_probe_end(["zt_a", "zt_b", "zt_c"], "probe ended with -9 (import crashed or timed out)")
    status = preloader.status()
    assert status["zt_a"]["state"] == "rejected"
    assert status["zt_b"] == {
        **status["zt_b"],
        "state": "rejected",
        "reason": "probe ended with -9 (import crashed or timed out)",
    }
    assert status["zt_c"]["state"] == "pending"  # not its fault: probed again
    preloader.observe(["zt_a"])
    assert preloader.records["zt_a"].state is ModuleState.REJECTED  # final for the generation


def test_a_probe_that_could_not_start_puts_its_batch_back(tmp_path: Path) -> None:
    preloader = Preloader(ApprovedPatterns(["zt_*"]), [], "")
    preloader.observe(["zt_a", "zt_b"])
    batch = preloader.take_batch()
    preloader.on_probe_end(batch, "")
    assert preloader.take_batch() == ["zt_a", "zt_b"]


def test_verified_modules_are_imported_and_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "zt_unit_promoted.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "zt_unit_promoted", raising=False)
    # The test process may run threads of earlier tests; a real forker has one (tests/e2e cover the check).
    monkeypatch.setattr(linux, "native_thread_count", lambda: 1)
    monkeypatch.setattr(gc, "freeze", gc.collect)  # do not freeze pytest's own heap
    state = tmp_path / "state.json"
    approved = ApprovedPatterns(["zt_unit_*"])
    preloader = Preloader(approved, ["zt_unit_promoted"], str(state))
    preloader.request_eager(["zt_unit_promoted", "pandasx_unapproved"])
    assert preloader.records["pandasx_unapproved"].reason == NOT_APPROVED
    assert preloader.take_batch() == ["zt_unit_promoted"]
    preloader.on_probe_report(_report("zt_unit_promoted", ok=True))
    assert preloader.on_probe_end(["zt_unit_promoted"], "", CLEAN_FORK) == []
    assert preloader.promote(preloader.worth_promoting()) == ["zt_unit_promoted"]
    assert "zt_unit_promoted" in sys.modules
    assert json.loads(state.read_text()) == {"loaded": ["zt_unit_promoted"], "rejected": {}}
    assert Preloader(approved, [], str(state)).loaded_from_state_file() == ["zt_unit_promoted"]


def test_a_state_file_of_the_old_format_is_read_with_kinds_and_saved_in_the_new(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    old = {
        "loaded": [],
        "rejected_in_forker": {"zt_x": "left 1 thread(s) running when imported in the forker (not in its probe)"},
        "rejected_in_probe": {"zt_sock": "left 1 file descriptor(s) open: socket:[1]"},
    }
    state.write_text(json.dumps(old))
    preloader = Preloader(ApprovedPatterns(["zt_*"]), [], str(state))
    preloader.observe(["zt_x", "zt_sock"])
    assert preloader.records["zt_x"].state is ModuleState.REJECTED
    assert preloader.records["zt_x"].reason.endswith("(remembered)")
    assert preloader.status()["zt_x"]["kind"] == "forker_thread"
    assert preloader.status()["zt_sock"]["kind"] == "fd"
    preloader.promote([])
    assert json.loads(state.read_text())["rejected"] == {
        "zt_x": {"kind": "forker_thread", "reason": old["rejected_in_forker"]["zt_x"]},
        "zt_sock": {"kind": "fd", "reason": old["rejected_in_probe"]["zt_sock"]},
    }


CLEAN_FORK = ProbeReport(module=TEST_FORK, ok=True, reason="", import_s=0.0, memory_delta=0)
LEFT_A_THREAD = _report(
    TEST_FORK, ok=False, reason="a fork left 1 thread(s) running in the parent", kind="thread_after_fork"
)


def _probed(preloader: Preloader, batch: list[str]) -> None:
    assert preloader.take_batch(batch) == batch
    for name in batch:
        preloader.on_probe_report(_report(name, ok=True))


def test_a_module_whose_hook_a_test_fork_convicts_is_rejected_and_remembered_its_round_probed_again(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.json"
    preloader = Preloader(ApprovedPatterns(["zt_*"]), [], str(state))
    preloader.observe_parse({"zt_hook": 0.1, "zt_fine": 0.1})
    _probed(preloader, ["zt_hook", "zt_fine"])
    convicted = LEFT_A_THREAD.reason
    preloader.on_probe_report(
        ProbeReport(
            module="zt_hook", ok=False, reason=convicted, import_s=0.1, memory_delta=0, kind="thread_after_fork"
        )
    )
    assert preloader.on_probe_end(["zt_hook", "zt_fine"], "", CLEAN_FORK) == []
    hook = preloader.status()["zt_hook"]
    assert (hook["state"], hook["kind"], hook["reason"]) == ("rejected", "thread_after_fork", convicted)
    # It could import the convicted module (whose hook then counted for the other): a fresh child decides.
    assert preloader.pending() == ["zt_fine"]
    _probed(preloader, ["zt_fine"])
    assert preloader.on_probe_end(["zt_fine"], "", CLEAN_FORK) == []
    assert preloader.records["zt_fine"].state is ModuleState.VERIFIED
    preloader.promote([])
    assert json.loads(state.read_text())["rejected"] == {"zt_hook": {"kind": "thread_after_fork", "reason": convicted}}
    restarted = Preloader(ApprovedPatterns(["zt_*"]), [], str(state))
    restarted.observe_parse({"zt_hook": 0.1, "zt_fine": 0.1})
    assert restarted.take_batch() == ["zt_fine"]  # not probed again


def test_a_fork_no_hook_explains_is_found_by_probing_apart() -> None:
    preloader = Preloader(ApprovedPatterns(["zt_*"]), [], "")
    names = ["zt_a", "zt_b", "zt_c"]
    preloader.observe_parse(dict.fromkeys(names, 0.1))
    _probed(preloader, names)
    groups = preloader.on_probe_end(names, "", LEFT_A_THREAD)
    assert groups == [["zt_a", "zt_b"], ["zt_c"]]
    assert preloader.pending() == names  # none verified until a clean fork says so
    _probed(preloader, ["zt_a", "zt_b"])
    assert preloader.on_probe_end(["zt_a", "zt_b"], "", CLEAN_FORK) == []
    _probed(preloader, ["zt_c"])
    assert preloader.on_probe_end(["zt_c"], "", LEFT_A_THREAD) == []  # alone in its probe: convicted
    assert preloader.records["zt_c"].state is ModuleState.REJECTED
    assert preloader.records["zt_c"].fault is Fault.THREAD_AFTER_FORK
    assert [preloader.records[n].state for n in ("zt_a", "zt_b")] == [ModuleState.VERIFIED] * 2


def test_a_probe_that_died_importing_or_forking_blames_no_verified_module_it_cannot_convict() -> None:
    preloader = Preloader(ApprovedPatterns(["zt_*"]), [], "")
    preloader.observe_parse({"zt_a": 0.1, "zt_crash": 0.1, "zt_c": 0.1})
    assert preloader.take_batch() == ["zt_a", "zt_crash", "zt_c"]
    preloader.on_probe_report(_report("zt_a", ok=True))
    # It died importing zt_crash: zt_a never had its test fork, so it goes back with the rest.
    assert preloader.on_probe_end(["zt_a", "zt_crash", "zt_c"], "probe ended with -9", None) == []
    assert preloader.records["zt_crash"].fault is Fault.CRASHED
    assert preloader.pending() == ["zt_a", "zt_c"]
    _probed(preloader, ["zt_a"])
    # Died during the test fork of a one-module probe: that module is rejected, as host-dependent.
    assert preloader.on_probe_end(["zt_a"], "probe ended with -9", None) == []
    assert preloader.records["zt_a"].fault is Fault.CRASHED
    assert preloader.records["zt_a"].reason == "probe ended with -9 during its test fork"


def test_the_probe_body_blames_a_python_hook_and_leaves_a_c_hook_to_probing_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real probe body in a forked child: its reports, as the forker would read them."""
    monkeypatch.syspath_prepend(str(LIBS))
    modules = ["zt_thread_after_fork", "zt_c_thread_after_fork", "zt_fine_u"]
    (tmp_path / "zt_fine_u.py").write_text("import os\nos.register_at_fork(after_in_child=lambda: None)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in modules:
        monkeypatch.delitem(sys.modules, name, raising=False)
    messages = _run_probe_body(modules)
    forked = messages[-1]
    assert (
        isinstance(forked, ProbeReport)
        and forked.module == TEST_FORK
        and not forked.ok
        and forked.kind == "thread_after_fork"
    )
    reports = [m for m in messages[:-1] if isinstance(m, ProbeReport)]
    assert [(r.module, r.ok, r.kind) for r in reports] == [
        ("zt_thread_after_fork", True, ""),
        ("zt_c_thread_after_fork", True, ""),
        ("zt_fine_u", True, ""),
        ("zt_thread_after_fork", False, "thread_after_fork"),  # its Python hook, measured
    ]
    preloader = Preloader(ApprovedPatterns(["zt_*"]), [], "")
    preloader.observe_parse(dict.fromkeys(modules, 0.1))
    preloader.take_batch()
    for report in reports:
        preloader.on_probe_report(report)
    # The C handler is seen only as a thread no hook explains: the other two are probed apart.
    assert preloader.on_probe_end(modules, "", forked) == [["zt_c_thread_after_fork"], ["zt_fine_u"]]
    assert preloader.records["zt_thread_after_fork"].fault is Fault.THREAD_AFTER_FORK


def test_probe_children_find_every_module_that_brings_a_thread_at_fork_and_keep_the_innocent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real probe bodies, rounds driven as the runner does: a module importing a culprit is one too."""
    monkeypatch.syspath_prepend(str(LIBS))
    (tmp_path / "zt_imports_hook.py").write_text("import zt_thread_after_fork\n")
    (tmp_path / "zt_fine_u.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = ["zt_imports_hook", "zt_thread_after_fork", "zt_c_thread_after_fork", "zt_fine_u"]
    preloader = Preloader(ApprovedPatterns(["zt_*"]), [], "")
    preloader.observe_parse(dict.fromkeys(modules, 0.1))
    apart: list[list[str]] = []
    probes = 0
    while batch := preloader.take_batch(apart.pop(0) if apart else None):
        probes += 1
        *reports, forked = _run_probe_body(batch)
        for report in reports:
            assert isinstance(report, ProbeReport)
            preloader.on_probe_report(report)
        assert isinstance(forked, ProbeReport)
        apart += preloader.on_probe_end(batch, "", forked)
    status = preloader.status()
    assert {name: (status[name]["state"], status[name]["kind"]) for name in modules} == {
        "zt_imports_hook": ("rejected", "thread_after_fork"),
        "zt_thread_after_fork": ("rejected", "thread_after_fork"),
        "zt_c_thread_after_fork": ("rejected", "thread_after_fork"),
        "zt_fine_u": ("verified", ""),
    }
    assert probes <= 5


def _run_probe_body(modules: list[str]) -> list[Message]:
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # one thread here, whatever the test process runs
        ours.close()
        code = 1
        try:
            code = _probe_all(modules, theirs, ProbeBounds(timeout_s=30, memory_bytes=0))
        finally:
            os._exit(code)
    theirs.close()
    reader = ChildReader(ours)
    messages = reader.read_until_eof(time.monotonic() + 60)
    reader.close()
    assert reap_blocking(pid) == 0
    return messages
