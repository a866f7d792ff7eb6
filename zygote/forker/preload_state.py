"""The preload state file: what a generation held and which libraries it found unsafe, for the next.

Format (JSON): ``{"loaded": [module, ...], "rejected": {module: {"kind": Fault value, "reason":
text}}}``. Only library faults (:data:`~zygote.forker.verdicts.LIBRARY_FAULTS`) are written
under ``rejected``; host-dependent rejections are tried again by the next generation.

Files written before rejections carried a kind (``rejected_in_forker`` and ``rejected_in_probe``,
module -> reason, library faults only) are still read: a forker entry is a thread in the forker,
a probe entry gets its kind from its reason's wording, the only place that wording is matched.
The next save writes the current format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zygote.forker.verdicts import Fault, fault_of

LEGACY_PROBE_WORDING = (
    ("thread(s) running", Fault.THREAD),
    ("file descriptor(s) open", Fault.FD),
    ("child process(es)", Fault.CHILD),
    ("garbage collector", Fault.GC),
)
"""How the old code worded each library fault it kept from a probe (reading old files only)."""


@dataclass(frozen=True)
class Remembered:
    """A rejection kept from an earlier generation."""

    fault: Fault
    reason: str


class StateFile:
    """Reads and writes ``preload_state_file``; an empty path keeps nothing, an unreadable file is empty."""

    def __init__(self, path: str) -> None:
        self.path = path

    def loaded(self) -> list[str]:
        names = self._read().get("loaded", [])
        return [name for name in names if isinstance(name, str)] if isinstance(names, list) else []

    def rejected(self) -> dict[str, Remembered]:
        state = self._read()
        remembered = _legacy(state)
        for name, entry in _mapping(state.get("rejected")).items():
            fields = _mapping(entry)
            fault = fault_of(str(fields.get("kind", "")))
            if fault is not None:
                remembered[name] = Remembered(fault, str(fields.get("reason", "")))
        return remembered

    def save(self, loaded: list[str], rejected: dict[str, Remembered]) -> None:
        if not self.path:
            return
        entries = {name: {"kind": r.fault.value, "reason": r.reason} for name, r in rejected.items()}
        path = Path(self.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"loaded": loaded, "rejected": entries}))
            tmp.replace(path)
        except OSError:
            return

    def _read(self) -> dict[str, Any]:
        if not self.path:
            return {}
        try:
            state = json.loads(Path(self.path).read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}


def _legacy(state: dict[str, Any]) -> dict[str, Remembered]:
    """Rejections in the format before kinds: every entry there was a library fault."""
    remembered = {}
    for name, reason in _mapping(state.get("rejected_in_forker")).items():
        remembered[name] = Remembered(Fault.FORKER_THREAD, str(reason))
    for name, reason in _mapping(state.get("rejected_in_probe")).items():
        fault = next((f for words, f in LEGACY_PROBE_WORDING if words in str(reason)), Fault.THREAD)
        remembered[name] = Remembered(fault, str(reason))
    return remembered


def _mapping(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}
