"""Lazy, verified preloading of approved modules into the forker.

How this works: workers report the modules they imported. Approved ones that the forker lacks
become PENDING. A throwaway **probe** child (forked from the forker, so it starts from the same
state) imports the pending modules in the order a worker imported them and, after each one,
checks that the process still has one thread, no new fd, no child process, and the same GC
settings, and that the import stayed within time and memory bounds. It reports a verdict per
module and stops at the first safety violation (the process is tainted from there on), also
when the import that left something behind failed; a clean failed import is a rejection of that
module only. What a rejected import started dies with the probe. Modules that passed are then
imported in the forker itself if they are worth holding (``promotion.py``: value against cost),
followed by one ``gc.collect()`` and ``gc.freeze()`` for them all; a verified module not worth it
yet stays VERIFIED, with the figures as its reason, and is judged again at every round. What a
promotion imported along with it is LOADED too. After its imports the probe forks once and checks the same again
(``at_fork.py``): a module whose at-fork hook leaves a thread (or fd, child, GC change) in the
parent is rejected with its own kind, and when no hook explains what the fork left, the modules
the probe verified are probed apart until a child that imported one alone convicts it.
Rejections are final for this generation and kept with their reason and kind (``verdicts.py``)
for ``status``; those whose kind is a property of the library are remembered in the state file
(``preload_state.py``) and not probed again by later generations.
"""

from __future__ import annotations

import _imp
import enum
import fnmatch
import gc
import importlib
import inspect
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from protocol import ProbeReport
from zygote import linux
from zygote.forker.preload_state import Remembered, StateFile
from zygote.forker.promotion import Usage, Worth, judge
from zygote.forker.verdicts import LIBRARY_FAULTS, Fault, fault_of

NOT_APPROVED = "listed in preload_modules but not approved: add it to [zygote] approved_modules"
REMEMBERED = " (remembered)"


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
    fault: Fault | None = None
    """Why it was rejected, as a kind (None unless REJECTED)."""
    import_s: float = 0.0
    memory_delta: int = 0
    forced: bool = False
    """Chosen already (preload_modules, warm-up, state file): promoted without judging its worth."""
    usage: Usage = field(default_factory=Usage)
    worth: Worth | None = None

    def as_dict(self) -> dict[str, Any]:
        worth = self.worth
        figures = {"saves_ms": round(worth.saves_ms, 3), "costs_ms": round(worth.costs_ms, 3)} if worth else {}
        return {
            "state": self.state.value,
            "reason": self.reason,
            "kind": self.fault.value if self.fault else "",
            "import_s": round(self.import_s, 6),
            "memory_delta": self.memory_delta,
            "parses": self.usage.parses,
            **figures,
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

    def __init__(
        self, approved: ApprovedPatterns, configured: Iterable[str], state_file: str, cost_per_mib_ms: float = 0.05
    ) -> None:
        self.approved = approved
        self.state_file = StateFile(state_file)
        self.cost_per_mib_ms = cost_per_mib_ms
        self.records: dict[str, ModuleRecord] = {name: ModuleRecord(ModuleState.NOT_SEEN) for name in configured}
        self.parses = 0
        self.tainted = False
        self.convicted_at_fork: set[str] = set()
        """Modules the running probe's test fork convicted (its verdicts come before its end)."""
        self._reject_remembered()

    def observe(self, modules: Iterable[str]) -> None:
        """Modules chosen already (warm-up, state file, eager): candidates promoted without judging."""
        for name in modules:
            record = self._candidate(name)
            if record is not None:
                record.forced = True

    def observe_parse(self, modules: dict[str, float]) -> None:
        """One worker's imports (name -> seconds): counted for their worth; new ones become PENDING."""
        self.parses += 1
        for name, seconds in modules.items():
            record = self._candidate(name)
            if record is not None and record.state is not ModuleState.REJECTED:  # final: nothing to judge
                record.usage.add(float(seconds or 0.0))

    def _candidate(self, name: str) -> ModuleRecord | None:
        """The record of an approved module, made PENDING if it is new here; None when not a candidate."""
        if not self.approved.matches(name):
            return None
        record = self.records.get(name)
        if record is not None and record.state is not ModuleState.NOT_SEEN:
            return record  # decided already: a rejection is final for this generation
        if name in sys.modules:
            if record is not None:  # configured, and Airflow's start-up imported it already
                record.state = ModuleState.LOADED
            return record
        self.records[name] = record = ModuleRecord(ModuleState.PENDING, usage=record.usage if record else Usage())
        return record

    def request_eager(self, modules: Iterable[str]) -> None:
        """``preload_modules``: candidates now; one that is not approved is rejected, visibly."""
        for name in modules:
            if self.approved.matches(name):
                self.observe([name])
            else:
                self.records[name] = ModuleRecord(ModuleState.REJECTED, NOT_APPROVED, Fault.NOT_APPROVED)

    def take_batch(self, names: Iterable[str] | None = None) -> list[str]:
        """``names`` (default: every PENDING module) that are still PENDING, now PROBING, in order."""
        wanted = self.records if names is None else names
        batch = [name for name in wanted if self._state(name) is ModuleState.PENDING]
        for name in batch:
            self.records[name].state = ModuleState.PROBING
        return batch

    def _state(self, name: str) -> ModuleState | None:
        record = self.records.get(name)
        return record.state if record else None

    def on_probe_report(self, report: ProbeReport) -> None:
        """A verdict on a PROBING module, or a verified one convicted by its probe's test fork."""
        record = self.records.get(report.module)
        convicted = record is not None and record.state is ModuleState.VERIFIED and not report.ok
        if record is None or not (record.state is ModuleState.PROBING or convicted):
            return
        if convicted:
            self.convicted_at_fork.add(report.module)
        record.state = ModuleState.VERIFIED if report.ok else ModuleState.REJECTED
        record.reason = report.reason
        record.fault = None if report.ok else fault_of(report.kind) or Fault.CRASHED
        record.import_s = report.import_s
        record.memory_delta = report.memory_delta

    def on_probe_end(self, batch: list[str], why: str, forked: ProbeReport | None = None) -> list[list[str]]:
        """The probe ended: blame who it died on, and judge what it verified by its test fork.

        The first unreported module is the culprit if the probe died early; the rest go back to
        PENDING. The modules it verified stay VERIFIED only if its test fork left nothing at all.
        They go back to PENDING, with the rest of the round, when the probe died importing (it
        never forked) or when the fork convicted a module (one of them may import it: a fresh
        child, without it, blames that one's import). When the fork left something no hook
        explains, they go back in groups (returned) to probe apart: a probe of one convicts it.
        """
        convicted, self.convicted_at_fork = self.convicted_at_fork & set(batch), set()
        unreported = [name for name in batch if self._state(name) is ModuleState.PROBING]
        died_importing = bool(why and unreported)
        if died_importing:
            self._reject(unreported.pop(0), Fault.CRASHED, why)
        verified = [name for name in batch if self._state(name) is ModuleState.VERIFIED]
        for name in unreported:
            self.records[name].state = ModuleState.PENDING
        if not verified or (forked is not None and forked.ok and not convicted):
            return []
        if died_importing or (forked is not None and forked.ok):
            for name in verified:
                self.records[name].state = ModuleState.PENDING
            return []
        return self._probe_apart(batch, verified, forked, why)

    def _probe_apart(
        self, batch: list[str], verified: list[str], forked: ProbeReport | None, why: str
    ) -> list[list[str]]:
        """What a test fork left is not explained: convict a module probed alone, else split in halves."""
        if batch == verified and len(verified) == 1:
            if forked is None:
                self._reject(verified[0], Fault.CRASHED, f"{why or 'probe ended'} during its test fork")
            else:
                self._reject(verified[0], fault_of(forked.kind) or Fault.CRASHED, forked.reason)
            return []
        for name in verified:
            self.records[name].state = ModuleState.PENDING
        half = (len(verified) + 1) // 2
        return [group for group in (verified[:half], verified[half:]) if group]

    def _reject(self, name: str, fault: Fault, reason: str) -> None:
        record = self.records[name]
        record.state, record.fault, record.reason = ModuleState.REJECTED, fault, reason

    def pending(self) -> list[str]:
        return [name for name, rec in self.records.items() if rec.state is ModuleState.PENDING]

    def has_pending(self) -> bool:
        return any(rec.state is ModuleState.PENDING for rec in self.records.values())

    def worth_promoting(self) -> list[str]:
        """VERIFIED modules worth holding now (their figures refreshed); the others say why not."""
        chosen, declined = [], set()
        for name, record in self.records.items():
            if record.state is not ModuleState.VERIFIED:
                continue
            record.worth = judge(record.usage, self.parses, record.memory_delta, self.cost_per_mib_ms)
            package = next((p for p in _packages_of(name) if p in declined), None)
            if package is not None and not record.forced:  # importing it would import its package too
                record.reason = f"not worth holding yet: its package {package} is not"
            elif record.forced or record.worth.promote:
                chosen.append(name)
                continue
            else:
                record.reason = "not worth holding yet: " + record.worth.explain()
            declined.add(name)
        return chosen

    def promote(self, chosen: list[str]) -> list[str]:
        """Import ``chosen`` (from :meth:`worth_promoting`) here, then collect and freeze once. Returns those loaded.

        A module that passed its probe may still start a thread here (it can tell the processes
        apart): then it is rejected, remembered in the state file, and :attr:`tainted` is set,
        because this process is no longer safe to fork from.
        """
        for name in chosen:
            self._import_here(name)
            if self.tainted:
                break
        promoted = [name for name in chosen if self.records[name].state is ModuleState.LOADED]
        if promoted:
            promoted += self._sweep_imported()
            freeze_heap()
        self._save_state()
        return promoted

    def _sweep_imported(self) -> list[str]:
        """Candidates a promotion imported along with what it chose are in the forker now: LOADED."""
        swept = []
        for name, record in self.records.items():
            waiting = record.state in (ModuleState.PENDING, ModuleState.VERIFIED, ModuleState.NOT_SEEN)
            if waiting and name in sys.modules:
                record.state, record.reason = ModuleState.LOADED, "imported by another promoted module"
                swept.append(name)
        return swept

    def _import_here(self, name: str) -> None:
        record = self.records[name]
        before = linux.rss_bytes()
        try:
            importlib.import_module(name)
        except BaseException as exc:
            self._reject(name, Fault.IMPORT_FAILED, "import failed in the forker: " + summary(exc))
            return
        threads = linux.native_thread_count()
        if threads != 1:
            reason = f"left {threads - 1} thread(s) running when imported in the forker (not in its probe)"
            self._reject(name, Fault.FORKER_THREAD, reason)
            self.tainted = True
            return
        record.state = ModuleState.LOADED
        record.memory_delta = linux.rss_bytes() - before

    def loaded_from_state_file(self) -> list[str]:
        """Modules a previous zygote learned (approved ones only)."""
        return [name for name in self.state_file.loaded() if self.approved.matches(name)]

    def _reject_remembered(self) -> None:
        """Modules found unsafe by an earlier generation (probe or forker) stay rejected, with their reason."""
        for name, remembered in self.state_file.rejected().items():
            self.records[name] = ModuleRecord(
                ModuleState.REJECTED, f"{remembered.reason}{REMEMBERED}", remembered.fault
            )

    def _save_state(self) -> None:
        loaded = [name for name, rec in self.records.items() if rec.state is ModuleState.LOADED]
        rejected = {
            name: Remembered(rec.fault, rec.reason.removesuffix(REMEMBERED))
            for name, rec in self.records.items()
            if rec.state is ModuleState.REJECTED and rec.fault in LIBRARY_FAULTS
        }
        self.state_file.save(loaded, rejected)

    def status(self) -> dict[str, Any]:
        return {name: rec.as_dict() for name, rec in self.records.items()}


def _packages_of(name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``: what importing it imports first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


MODULE_MAP_MISS = "<airflow-zygote: fill inspect's module map>"
"""A file name no module has: asking :func:`inspect.getmodule` for it maps every module in sys.modules."""
NO_MODULE = "<airflow-zygote: no module>"
"""What inspect's module map names for a frozen module's code file: no entry of ``sys.modules``."""


def freeze_heap() -> None:
    """Fill what parse code would build from ``sys.modules``, then ``gc.collect(); gc.freeze()``.

    ``inspect.getmodule`` (behind ``inspect.stack()``, ``getsource``, warnings' source lines) maps
    every module's file the first time it misses, one ``realpath`` per module: ~1 s for the 1,400
    modules of a bare forker, seconds for the thousands a provider-heavy one holds, paid again by
    every worker. Filled here, the map is shared in the frozen heap and a worker only maps the
    modules its parse imported, as a stock child only maps what its manager did not.

    A frame of frozen code (``<frozen importlib._bootstrap>``: five of them under every DAG file
    being imported) is never in the map, so each lookup for one walks all of ``sys.modules``
    again, twice per frame and ``inspect.stack()`` call, and answers None. The map answers None
    for those names at once (:func:`frozen_code_files`).
    """
    inspect.getmodule(None, MODULE_MAP_MISS)
    for name in frozen_code_files():
        inspect.modulesbyfile.setdefault(name, NO_MODULE)
    gc.collect()
    gc.freeze()


def frozen_code_files() -> list[str]:
    """The file names of frozen modules' code (``<frozen importlib._bootstrap>``, ``<frozen os>``).

    A frozen module's code is named after its original name (``_frozen_importlib`` ran from
    ``importlib._bootstrap``); its ``__file__``, if any, is the real path, so no module has these.
    """
    files = []
    for name in getattr(_imp, "_frozen_module_names", list)():  # CPython 3.11+; without it, nothing to add
        found = _imp.find_frozen(name)
        if found is not None:
            files.append(f"<frozen {found[2] or name}>")
    return files


def summary(exc: BaseException) -> str:
    """The exception and where it was raised, e.g. ``RuntimeError: no (at /x/lib.py:12)``."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        text += f" (at {frames[-1].filename}:{frames[-1].lineno})"
    return text[-2000:]
