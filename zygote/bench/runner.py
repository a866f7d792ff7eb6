"""The interleaved benchmark loop: per parallelism value, one zygote, then rounds alternating sides.

Rounds alternate which side goes first (stock-zygote, zygote-stock, ...) so slow drifts in machine
load (thermal throttling, a neighbour's cron job) hit both sides equally. Each side round is a fresh
subprocess; the parent only spawns, samples memory and reads reports.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from zygote.bench.environment import SIDES, Homes, side_env
from zygote.bench.procs import Registry
from zygote.bench.results import ChildRecord, RoundResult, SideOutput, read_side_output
from zygote.bench.sampler import Peak, TreeSampler
from zygote.bench.zygote_server import ZygoteServer

log = structlog.get_logger(__name__)

DEFAULT_SAMPLE_INTERVAL = 0.1


@dataclass(frozen=True)
class BenchConfig:
    """Everything one invocation needs; built from the CLI arguments."""

    dags: Path | None
    rounds: int
    parallelism: tuple[int, ...]
    approved_modules: str
    output: Path | None = None
    chart: Path | None = None
    sample_interval: float = DEFAULT_SAMPLE_INTERVAL
    round_timeout: float | None = None
    keep_workdir: bool = False

    def timeout_for(self, files: int) -> float:
        """Per-round ceiling: generous, but bounded, so a hung side never stalls the bench forever."""
        return self.round_timeout or 180.0 + 5.0 * files


def side_order(round_no: int) -> tuple[str, ...]:
    """Alternate which side runs first each round."""
    return SIDES if round_no % 2 == 1 else tuple(reversed(SIDES))


def merge_peaks(children: list[ChildRecord], peaks: dict[int, Peak]) -> None:
    """A child's peak is the larger of its own report and what the parent's sampler saw."""
    for child in children:
        peak = peaks.get(child.pid) if child.pid is not None else None
        if peak is not None:
            child.uss = max(child.uss or 0, peak.uss) or None
            child.pss = max(child.pss or 0, peak.pss) or None


@dataclass
class Progress:
    """The bits of a rich progress bar the loop uses (a no-op stand-in keeps the loop testable)."""

    bar: Any = None
    task: Any = None

    def step(self, description: str, advance: int = 0) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=description, advance=advance)


@dataclass
class Bench:
    """Runs the rounds and keeps every raw result."""

    config: BenchConfig
    homes: Homes
    registry: Registry
    file_count: int
    progress: Progress = field(default_factory=Progress)
    results: dict[tuple[int, str], list[RoundResult]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[int, dict[str, Any] | None] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        for parallelism in self.config.parallelism:
            self.run_parallelism(parallelism)

    def run_parallelism(self, parallelism: int) -> None:
        """One zygote for all rounds at this parallelism; it is stopped even if a round blows up."""
        self.progress.step(f"P={parallelism}: starting the zygote")
        env = side_env(self.homes, "zygote", parallelism, self.config.approved_modules)
        server = ZygoteServer(self.registry, env, self.homes.root / "logs" / f"zygote-p{parallelism}.log")
        try:
            server.start()
            self.progress.step(f"P={parallelism}: zygote ready", advance=1)
            for round_no in range(1, self.config.rounds + 1):
                for side in side_order(round_no):
                    self.run_one(side, parallelism, round_no, server)
            self.statuses[parallelism] = server.status()
        finally:
            server.stop()

    def run_one(self, side: str, parallelism: int, round_no: int, server: ZygoteServer) -> None:
        self.progress.step(f"P={parallelism} round {round_no}/{self.config.rounds}: {side}")
        extra_roots = [server.pid] if side == "zygote" else []
        result = run_round(self, side, parallelism, round_no, extra_roots)
        if not result.ok:
            self.errors.append(f"P={parallelism} round {round_no} {side}: {result.error}")
            log.warning("bench.round_failed", side=side, parallelism=parallelism, round=round_no, error=result.error)
        self.results[(parallelism, side)].append(result)
        self.progress.step(f"P={parallelism} round {round_no}/{self.config.rounds}: {side} done", advance=1)


def run_round(bench: Bench, side: str, parallelism: int, round_no: int, extra_roots: list[int]) -> RoundResult:
    """Spawn the side, sample its tree (plus the zygote's) until it exits or times out, read its report."""
    tag = f"p{parallelism}-r{round_no}-{side}"
    root = bench.homes.root
    out, child_dir = root / "rounds" / f"{tag}.json", root / "children" / tag
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "zygote.bench.run_side", "--side", side, "--output", str(out),
           "--child-dir", str(child_dir)]  # fmt: skip
    env = side_env(bench.homes, side, parallelism, bench.config.approved_modules)
    began = time.monotonic()
    started = bench.registry.spawn(tag, cmd, env, root / "logs" / f"{tag}.log")
    sampler = TreeSampler([started.pid, *extra_roots], bench.config.sample_interval).start()
    error = None
    try:
        started.popen.wait(timeout=bench.config.timeout_for(bench.file_count))
    except subprocess.TimeoutExpired:
        error = f"timed out after {bench.config.timeout_for(bench.file_count):.0f}s"
    finally:
        sampler.stop()
        bench.registry.stop(started)
    output = read_side_output(out) or SideOutput(side=side, parallelism=parallelism, error="no report written")
    error = error or _first_line(output.error) or _exit_error(started.popen.returncode) or _nothing_parsed(output)
    if error:
        log.debug("bench.round_log_tail", tag=tag, tail=started.log_tail())
    merge_peaks(output.children, sampler.peaks)
    return RoundResult(side, parallelism, round_no, error is None, error, time.monotonic() - began, output,
                       sampler.window(output.run_started, output.run_ended))  # fmt: skip


def _first_line(error: str | None) -> str | None:
    return error.strip().splitlines()[0] if error and error.strip() else None


def _nothing_parsed(output: SideOutput) -> str | None:
    """A round that parsed no file measured nothing; it must not pass for a very fast one."""
    return None if any(f.parse_s is not None for f in output.files) else "no file was parsed"


def _exit_error(code: int | None) -> str | None:
    return None if code == 0 else f"side process exited with code {code}"
