"""Lazy, verified preloading of approved modules into the forker.

How this works: workers report the modules they imported. Approved ones that the forker lacks
become PENDING. A throwaway **probe** child (forked from the forker, so it starts from the same
state) imports the pending modules in the order a worker imported them and, after each one,
checks that the process still has one thread, no new fd, no child process, and the same GC
settings, and that the import stayed within time and memory bounds. It reports a verdict per
module and stops at the first safety violation (the process is tainted from there on), also
when the import that left something behind failed; a clean failed import is a rejection of that
module only. What a rejected import started dies with the probe. Modules that passed are then
imported in the forker itself, followed by ``gc.collect()`` and ``gc.freeze()``. Rejections are
final for this generation and kept with their reason for ``status``.
"""

from __future__ import annotations

import enum
import fnmatch
import gc
import importlib
import inspect
import json
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from protocol import ProbeReport
from zygote import linux

NOT_APPROVED = "listed in preload_modules but not approved: add it to [zygote] approved_modules"


class ModuleState(enum.Enum):
    NOT_SEEN = "not_seen"
    PENDING = "pending"
    PROBING = "probing"
    VERIFIED = "verified"
    LOADED = "loaded"
    REJECTED = "rejected"


@dataclass
class ModuleRecord:
    state: ModuleState
    reason: str = ""
    import_s: float = 0.0
    memory_delta: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "reason": self.reason,
            "import_s": round(self.import_s, 6),
            "memory_delta": self.memory_delta,
        }


class ApprovedPatterns:
    """``pandas``, ``mycompany.*``: a name matches itself and its submodules; ``*`` globs."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(dict.fromkeys(p.strip() for p in patterns if p.strip()))

    @classmethod
    def with_airflow(cls, configured: Iterable[str]) -> ApprovedPatterns:
        """The configured patterns plus Airflow and every installed provider's package."""
        return cls((*configured, "airflow", *_provider_packages()))

    def matches(self, module: str) -> bool:
        return any(_matches(pattern, module) for pattern in self.patterns)


def _matches(pattern: str, module: str) -> bool:
    base = pattern[:-2] if pattern.endswith(".*") else pattern
    if "*" in base or "?" in base:
        return fnmatch.fnmatchcase(module, pattern)
    return module == base or module.startswith(base + ".")


def _provider_packages() -> list[str]:
    packages = []
    for entry in entry_points(group="apache_airflow_provider"):
        top = entry.value.split(":")[0].split(".")[0]
        if top and top != "airflow":
            packages.append(top)
    return packages


@dataclass(frozen=True)
class ProbeBounds:
    timeout_s: float
    memory_bytes: int


class Preloader:
    """Tracks every approved module's state and decides what to probe and promote."""

    def __init__(self, approved: ApprovedPatterns, configured: Iterable[str], state_file: str) -> None:
        self.approved = approved
        self.state_file = state_file
        self.records: dict[str, ModuleRecord] = {name: ModuleRecord(ModuleState.NOT_SEEN) for name in configured}
        self.tainted = False
        self._reject_remembered()

    def observe(self, modules: Iterable[str]) -> None:
        """Modules a worker imported: approved ones the forker lacks become PENDING."""
        for name in modules:
            if not self.approved.matches(name):
                continue
            record = self.records.get(name)
            if record is not None and record.state is not ModuleState.NOT_SEEN:
                continue  # decided already: a rejection is final for this generation
            if name in sys.modules:
                if record is not None:  # configured, and Airflow's start-up imported it already
                    record.state = ModuleState.LOADED
                continue
            self.records[name] = ModuleRecord(ModuleState.PENDING)

    def request_eager(self, modules: Iterable[str]) -> None:
        """``preload_modules``: candidates now; one that is not approved is rejected, visibly."""
        for name in modules:
            if self.approved.matches(name):
                self.observe([name])
            else:
                self.records[name] = ModuleRecord(ModuleState.REJECTED, reason=NOT_APPROVED)

    def take_batch(self) -> list[str]:
        """Every PENDING module, now PROBING, in the order they were first seen."""
        batch = [name for name, rec in self.records.items() if rec.state is ModuleState.PENDING]
        for name in batch:
            self.records[name].state = ModuleState.PROBING
        return batch

    def on_probe_report(self, report: ProbeReport) -> None:
        record = self.records.get(report.module)
        if record is None or record.state is not ModuleState.PROBING:
            return
        record.state = ModuleState.VERIFIED if report.ok else ModuleState.REJECTED
        record.reason = report.reason
        record.import_s = report.import_s
        record.memory_delta = report.memory_delta

    def on_probe_end(self, batch: list[str], why: str) -> None:
        """The probe ended: the first unreported module is the culprit if it died early."""
        unreported = [name for name in batch if self.records[name].state is ModuleState.PROBING]
        if not unreported:
            return
        if why:
            self.records[unreported[0]] = ModuleRecord(ModuleState.REJECTED, reason=why)
            unreported = unreported[1:]
        for name in unreported:
            self.records[name].state = ModuleState.PENDING

    def has_pending(self) -> bool:
        return any(rec.state is ModuleState.PENDING for rec in self.records.values())

    def promote_verified(self) -> list[str]:
        """Import verified modules here, then collect and freeze. Returns those loaded.

        A module that passed its probe may still start a thread here (it can tell the processes
        apart): then it is rejected, remembered in the state file, and :attr:`tainted` is set,
        because this process is no longer safe to fork from.
        """
        loaded = [name for name, rec in self.records.items() if rec.state is ModuleState.VERIFIED]
        for name in loaded:
            self._import_here(name)
            if self.tainted:
                break
        promoted = [name for name in loaded if self.records[name].state is ModuleState.LOADED]
        if promoted:
            freeze_heap()
        if promoted or self.tainted:
            self._save_state()
        return promoted

    def _import_here(self, name: str) -> None:
        record = self.records[name]
        before = linux.rss_bytes()
        try:
            importlib.import_module(name)
        except BaseException as exc:
            record.state = ModuleState.REJECTED
            record.reason = "import failed in the forker: " + summary(exc)
            return
        threads = linux.native_thread_count()
        if threads != 1:
            record.state = ModuleState.REJECTED
            record.reason = f"left {threads - 1} thread(s) running when imported in the forker (not in its probe)"
            self.tainted = True
            return
        record.state = ModuleState.LOADED
        record.memory_delta = linux.rss_bytes() - before

    def loaded_from_state_file(self) -> list[str]:
        """Modules a previous zygote learned (approved ones only)."""
        names = self._read_state().get("loaded", [])
        if not isinstance(names, list):
            return []
        return [name for name in names if isinstance(name, str) and self.approved.matches(name)]

    def _read_state(self) -> dict[str, Any]:
        if not self.state_file:
            return {}
        try:
            state = json.loads(Path(self.state_file).read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _reject_remembered(self) -> None:
        """Modules that made an earlier generation unsafe stay rejected, with their reason."""
        rejected = self._read_state().get("rejected_in_forker", {})
        for name, reason in rejected.items() if isinstance(rejected, dict) else []:
            self.records[name] = ModuleRecord(ModuleState.REJECTED, reason=f"{reason} (remembered)")

    def _save_state(self) -> None:
        if not self.state_file:
            return
        loaded = [name for name, rec in self.records.items() if rec.state is ModuleState.LOADED]
        unsafe = {
            name: rec.reason.removesuffix(" (remembered)")
            for name, rec in self.records.items()
            if rec.state is ModuleState.REJECTED and "imported in the forker (not in its probe)" in rec.reason
        }
        path = Path(self.state_file)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"loaded": loaded, "rejected_in_forker": unsafe}))
            tmp.replace(path)
        except OSError:
            return

    def status(self) -> dict[str, Any]:
        return {name: rec.as_dict() for name, rec in self.records.items()}


MODULE_MAP_MISS = "<airflow-zygote: fill inspect's module map>"
"""A file name no module has: asking :func:`inspect.getmodule` for it maps every module in sys.modules."""


def freeze_heap() -> None:
    """Fill what parse code would build from ``sys.modules``, then ``gc.collect(); gc.freeze()``.

    ``inspect.getmodule`` (behind ``inspect.stack()``, ``getsource``, warnings' source lines) maps
    every module's file the first time it misses, one ``realpath`` per module: ~1 s for the 1,400
    modules of a bare forker, seconds for the thousands a provider-heavy one holds, paid again by
    every worker. Filled here, the map is shared in the frozen heap and a worker only maps the
    modules its parse imported, as a stock child only maps what its manager did not.
    """
    inspect.getmodule(None, MODULE_MAP_MISS)
    gc.collect()
    gc.freeze()


def summary(exc: BaseException) -> str:
    """The exception and where it was raised, e.g. ``RuntimeError: no (at /x/lib.py:12)``."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        text += f" (at {frames[-1].filename}:{frames[-1].lineno})"
    return text[-2000:]
