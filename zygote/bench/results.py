"""Raw per-round records, shared by the side subprocess (which writes them) and the parent (which reads them).

They travel as JSON files because each side runs in its own interpreter: the two sides must never share
a process, or one side's imports and heap would colour the other's figures.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

Json = dict[str, Any]


@dataclass
class FileRecord:
    """One file as the manager saw it: ``parse_s`` is Airflow's own ``DagFileStat.last_duration`` plus
    ``manager_side_s``, the manager's work for the file before the child started (stock's pre-import)."""

    path: str
    category: str
    parse_s: float | None
    num_dags: int = 0
    import_errors: int = 0
    manager_side_s: float = 0.0


@dataclass
class ChildRecord:
    """One parse child: self-reported (stock) or ledger-reported (zygote) figures, plus sampler peaks."""

    path: str
    category: str
    outcome: str
    pid: int | None = None
    exit_code: int | None = None
    wall_s: float | None = None
    uss: int | None = None
    pss: int | None = None
    gc_s: float | None = None
    gc_gen2_s: float | None = None
    gc_collections: int | None = None
    fork_ms: float | None = None
    dispatch_ms: float | None = None
    imports: dict[str, float] = field(default_factory=dict)


@dataclass
class SideOutput:
    """What a side subprocess reports about its one ``manager.run()``."""

    side: str
    parallelism: int
    run_started: float | None = None
    run_ended: float | None = None
    wall_s: float | None = None
    files: list[FileRecord] = field(default_factory=list)
    children: list[ChildRecord] = field(default_factory=list)
    error: str | None = None


@dataclass
class MemoryWindow:
    """Whole-tree memory sampled by the parent while the side's manager ran (bytes)."""

    total_pss_peak: int | None = None
    total_pss_mean: float | None = None
    total_uss_peak: int | None = None
    total_rss_peak: int | None = None
    samples: int = 0
    processes_seen: int = 0
    peak_at_s: float | None = None
    peak_parts: list[Json] = field(default_factory=list)
    role_peaks: dict[str, int] = field(default_factory=dict)
    torn_samples: int = 0
    torn_pss_peak: int | None = None


@dataclass
class RoundResult:
    """One side, one round: the side's own report plus what the parent measured around it."""

    side: str
    parallelism: int
    round: int
    ok: bool
    error: str | None
    process_wall_s: float
    output: SideOutput
    memory: MemoryWindow


def _build(cls: Any, data: Json) -> Any:
    """Instantiate a flat dataclass from a dict, ignoring unknown keys so older files still load."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def side_output_from_json(data: Json) -> SideOutput:
    """Inverse of ``asdict(SideOutput)``."""
    out: SideOutput = _build(SideOutput, data)
    out.files = [_build(FileRecord, f) for f in data.get("files", [])]
    out.children = [_build(ChildRecord, c) for c in data.get("children", [])]
    return out


def write_json(path: Path, data: Json) -> None:
    """Write atomically so a reader never sees half a file, even if the writer is killed mid-way."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str), encoding="utf-8")
    tmp.replace(path)


def read_side_output(path: Path) -> SideOutput | None:
    """Load a side's report; ``None`` when the side died before writing one."""
    data = read_json_dict(path)
    return side_output_from_json(data) if data is not None else None


def round_to_json(result: RoundResult) -> Json:
    """Every raw figure of a round, for the ``raw`` section of the report."""
    return asdict(result)


def read_json_dict(path: Path) -> Json | None:
    """A JSON object from a file, or ``None`` if it is missing, partial or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
