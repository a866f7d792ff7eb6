"""A background thread sampling USS/PSS of whole process trees at a fixed interval.

PSS is the only figure that adds up across processes sharing copy-on-write pages (a forked child's
untouched pages are split between it and its parent), so the sum of PSS over every process is the
honest "total memory" of a side. Per-process peaks are kept too, so the parent can take the larger of
its own observation and a child's self-report.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psutil

from zygote.bench.results import MemoryWindow

DEFAULT_INTERVAL = 0.05


@dataclass(frozen=True)
class Sample:
    """One instant: sums over every live process of the sampled trees."""

    at: float
    pss: int
    uss: int
    rss: int
    processes: int


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
        """Read every process of every tree once and record the sums and per-pid peaks."""
        pss = uss = rss = count = 0
        for proc in self._processes():
            memory = read_memory(proc)
            if memory is None:
                continue
            p_uss, p_pss, p_rss = memory
            self._note_peak(proc.pid, p_uss, p_pss)
            uss, pss, rss, count = uss + p_uss, pss + p_pss, rss + p_rss, count + 1
        if count:
            self.samples.append(Sample(time.time(), pss, uss, rss, count))

    def _processes(self) -> list[psutil.Process]:
        seen: dict[int, psutil.Process] = {}
        for root in self._roots:
            for proc in tree(root):
                seen.setdefault(proc.pid, proc)
        return list(seen.values())

    def _note_peak(self, pid: int, uss: int, pss: int) -> None:
        peak = self.peaks.setdefault(pid, Peak())
        peak.uss = max(peak.uss, uss)
        peak.pss = max(peak.pss, pss)

    def window(self, start: float | None, end: float | None) -> MemoryWindow:
        """Summary of the samples within ``[start, end]`` (epoch seconds); all samples if unknown."""
        return summarize_samples(self.samples, start, end, processes_seen=len(self.peaks))


def summarize_samples(
    samples: list[Sample], start: float | None, end: float | None, *, processes_seen: int = 0
) -> MemoryWindow:
    """Peak and mean totals over a time window; the window falls back to everything when empty."""
    chosen = [s for s in samples if (start is None or s.at >= start) and (end is None or s.at <= end)]
    chosen = chosen or samples
    if not chosen:
        return MemoryWindow(processes_seen=processes_seen)
    return MemoryWindow(
        total_pss_peak=max(s.pss for s in chosen),
        total_pss_mean=sum(s.pss for s in chosen) / len(chosen),
        total_uss_peak=max(s.uss for s in chosen),
        total_rss_peak=max(s.rss for s in chosen),
        samples=len(chosen),
        processes_seen=processes_seen,
    )


def peak_lookup(peaks: dict[int, Peak]) -> Callable[[int | None], Peak | None]:
    """A pid -> peak getter tolerant of unknown pids (children the sampler never caught alive)."""
    return lambda pid: peaks.get(pid) if pid is not None else None
