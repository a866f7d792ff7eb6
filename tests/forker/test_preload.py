"""Preloader decisions and approved-pattern matching, without a forker (the state file is real)."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import pytest

from protocol import ProbeReport
from zygote import linux
from zygote.forker.preload import NOT_APPROVED, ApprovedPatterns, ModuleState, Preloader


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


def _report(module: str, ok: bool, reason: str = "") -> ProbeReport:
    return ProbeReport(module=module, ok=ok, reason=reason, import_s=0.1, memory_delta=1024)


def test_lifecycle_observe_probe_reject_and_requeue(tmp_path: Path) -> None:
    preloader = Preloader(ApprovedPatterns(["zt_*"]), [], str(tmp_path / "state.json"))
    preloader.observe(["zt_a", "zt_b", "zt_c", "not_approved", "json"])
    assert preloader.take_batch() == ["zt_a", "zt_b", "zt_c"]
    assert not preloader.has_pending()
    preloader.on_probe_report(_report("zt_a", ok=False, reason="left 1 thread(s) running after import"))
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
    assert preloader.promote_verified() == ["zt_unit_promoted"]
    assert "zt_unit_promoted" in sys.modules
    assert json.loads(state.read_text()) == {
        "loaded": ["zt_unit_promoted"],
        "rejected_in_forker": {},
        "rejected_in_probe": {},
    }
    assert Preloader(approved, [], str(state)).loaded_from_state_file() == ["zt_unit_promoted"]


def test_a_module_unsafe_in_the_forker_stays_rejected_across_generations(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"loaded": [], "rejected_in_forker": {"zt_x": "left 1 thread(s) running"}}))
    preloader = Preloader(ApprovedPatterns(["zt_*"]), [], str(state))
    preloader.observe(["zt_x"])
    assert preloader.records["zt_x"].state is ModuleState.REJECTED
    assert preloader.records["zt_x"].reason.endswith("(remembered)")
