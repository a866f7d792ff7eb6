"""A background thread sampling USS/PSS of whole process trees at a fixed interval.

PSS is the only figure that adds up across processes sharing copy-on-write pages (a forked child's
untouched pages are split between it and its parent), so the sum of PSS over every process is the
honest "total memory" of a side. Per-process peaks are kept too, so the parent can take the larger of
its own observation and a child's self-report.

Each sample also keeps its parts, one per process with the role its place in the tree gives it
(:func:`role_of`), so the peak can be broken down per process: which process holds the excess is the
question a total cannot answer. Page tables (``VmPTE``) are counted apart: they are kernel memory
that neither USS nor PSS includes, and every fork of a large process copies them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace

import psutil

from zygote.bench.results import MemoryWindow

DEFAULT_INTERVAL = 0.05


@dataclass(frozen=True)
class Part:
    """One process at one instant: its role (:func:`role_of`) and its memory, bytes."""

    pid: int
    role: str
    pss: int
    uss: int
    rss: int
    pte: int


@dataclass(frozen=True)
class Sample:
    """One instant: sums over every live process of the sampled trees, and the processes themselves."""

    at: float
    pss: int
    uss: int
    rss: int
    processes: int
    parts: tuple[Part, ...] = ()
    torn: bool = False
    """A process appeared or went away while the sample was read: its sum is not one instant's.

    PSS divides each shared page by the processes mapping it *when read*: a fork between reading the
    forker (or a manager) and reading its children counts the shared pages a fraction too often
    (forker at 1/k, every child at 1/(k+1)), an exit undercounts. Such sums are kept out of the
    peak, which would otherwise pick them precisely because they are too high."""


ROOT_ROLES = (("manager", "child", "child"), ("gateway", "forker", "forker_child"))
"""Role by (root index, depth): root 0 is the side's manager, root 1 the zygote's gateway."""


def role_of(root_index: int, depth: int) -> str:
    """``manager``/``child`` on a side's own tree; ``gateway``/``forker``/``forker_child`` on the zygote's."""
    roles = ROOT_ROLES[min(root_index, len(ROOT_ROLES) - 1)]
    return roles[min(depth, len(roles) - 1)]


@dataclass
class Peak:
    """Largest USS/PSS observed for one pid."""

    uss: int = 0
    pss: int = 0


def tree(root: psutil.Process) -> list[psutil.Process]:
    """The root and all its descendants; empty when the root is already gone."""
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def page_tables(pid: int) -> int:
    """``VmPTE`` of a process in bytes (0 when unreadable): kernel memory outside USS and PSS."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmPTE:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def depths(root: psutil.Process, procs: list[psutil.Process]) -> dict[int, int]:
    """Depth of each process below ``root`` (0 for the root), from parent pids; unknown parents count 1."""
    parents: dict[int, int] = {}
    for proc in procs:
        try:
            parents[proc.pid] = proc.ppid()
        except psutil.Error:
            continue
    found: dict[int, int] = {root.pid: 0}

    def depth(pid: int, hops: int = 0) -> int:
        if pid not in found:
            parent = parents.get(pid)
            found[pid] = 1 if parent is None or hops > 16 else depth(parent, hops + 1) + 1
        return found[pid]

    return {proc.pid: depth(proc.pid) for proc in procs}


def read_memory(proc: psutil.Process) -> tuple[int, int, int] | None:
    """(uss, pss, rss) from smaps; ``None`` for processes that vanished or that we may not read."""
    try:
        info = proc.memory_full_info()
    except psutil.Error:
        return None
    return int(info.uss), int(getattr(info, "pss", info.uss)), int(info.rss)


class TreeSampler:
    """Samples the trees rooted at ``roots`` every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, roots: Iterable[int], interval: float = DEFAULT_INTERVAL) -> None:
        self.interval = interval
        self.samples: list[Sample] = []
        self.peaks: dict[int, Peak] = {}
        self._roots = [psutil.Process(pid) for pid in roots if psutil.pid_exists(pid)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="zygote-bench-sampler", daemon=True)

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop and join; one last sample is not taken, the interval is short enough."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self.sample_once()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def sample_once(self) -> None:
        """Read every process of every tree once and record the sums, the parts and per-pid peaks."""
        listed = self._processes()
        parts: list[Part] = []
        for proc, role in listed:
            memory = read_memory(proc)
            if memory is None:
                continue
            p_uss, p_pss, p_rss = memory
            self._note_peak(proc.pid, p_uss, p_pss)
            parts.append(Part(proc.pid, role, p_pss, p_uss, p_rss, page_tables(proc.pid)))
        if parts:
            torn = {p.pid for p in parts} != {proc.pid for proc, _ in self._processes()}
            pss, uss, rss = (sum(getattr(p, key) for p in parts) for key in ("pss", "uss", "rss"))
            self.samples.append(Sample(time.time(), pss, uss, rss, len(parts), tuple(parts), torn))

    def _processes(self) -> list[tuple[psutil.Process, str]]:
        """Every live process of every tree once (PSS must be summed once per process), with its role."""
        seen: dict[int, tuple[psutil.Process, str]] = {}
        for index, root in enumerate(self._roots):
            procs = tree(root)
            depth = depths(root, procs)
            for proc in procs:
                seen.setdefault(proc.pid, (proc, role_of(index, depth[proc.pid])))
        return list(seen.values())

    def _note_peak(self, pid: int, uss: int, pss: int) -> None:
        peak = self.peaks.setdefault(pid, Peak())
        peak.uss = max(peak.uss, uss)
        peak.pss = max(peak.pss, pss)

    def window(self, start: float | None, end: float | None, parse_pids: Iterable[int] = ()) -> MemoryWindow:
        """Summary of the samples within ``[start, end]`` (epoch seconds); all samples if unknown."""
        return summarize_samples(self.samples, start, end, processes_seen=len(self.peaks), parse_pids=parse_pids)


def relabel(sample: Sample, parse_pids: frozenset[int]) -> Sample:
    """Name children by what they did: ``worker``/``child`` parsed a file, the rest did not.

    Below the forker that rest is probe children and idle pool workers (``forker_other``); below a
    manager, anything it started that was not a parse (``manager_other``, e.g. a secrets cache server).
    """
    names = {"forker_child": ("worker", "forker_other"), "child": ("child", "manager_other")}

    def name(part: Part) -> str:
        choices = names.get(part.role)
        return part.role if choices is None else choices[0] if part.pid in parse_pids else choices[1]

    parts = tuple(replace(part, role=name(part)) for part in sample.parts)
    return replace(sample, parts=parts)


def summarize_samples(
    samples: list[Sample],
    start: float | None,
    end: float | None,
    *,
    processes_seen: int = 0,
    parse_pids: Iterable[int] = (),
) -> MemoryWindow:
    """Peak and mean totals over a time window; the window falls back to everything when empty."""
    chosen = [s for s in samples if (start is None or s.at >= start) and (end is None or s.at <= end)]
    pids = frozenset(parse_pids)
    every = [relabel(s, pids) for s in chosen or samples]
    chosen = [s for s in every if not s.torn] or every
    if not chosen:
        return MemoryWindow(processes_seen=processes_seen)
    peak = max(chosen, key=lambda s: s.pss)
    return MemoryWindow(
        total_pss_peak=peak.pss,
        total_pss_mean=sum(s.pss for s in chosen) / len(chosen),
        total_uss_peak=max(s.uss for s in chosen),
        total_rss_peak=max(s.rss for s in chosen),
        samples=len(chosen),
        processes_seen=processes_seen,
        peak_at_s=None if start is None else peak.at - start,
        peak_parts=[asdict(part) for part in peak.parts],
        role_peaks=role_peaks(chosen),
        torn_samples=len(every) - len(chosen),
        torn_pss_peak=max(s.pss for s in every),
    )


def role_peaks(samples: list[Sample]) -> dict[str, int]:
    """The largest PSS each role reached over the window, summed over that role's processes in a sample."""
    peaks: dict[str, int] = {}
    for sample in samples:
        totals: dict[str, int] = {}
        for part in sample.parts:
            totals[part.role] = totals.get(part.role, 0) + part.pss
        for role, total in totals.items():
            peaks[role] = max(peaks.get(role, 0), total)
    return peaks


def peak_lookup(peaks: dict[int, Peak]) -> Callable[[int | None], Peak | None]:
    """A pid -> peak getter tolerant of unknown pids (children the sampler never caught alive)."""
    return lambda pid: peaks.get(pid) if pid is not None else None
