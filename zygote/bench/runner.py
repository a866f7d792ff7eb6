"""The interleaved benchmark loop: per parallelism value, one zygote, then rounds alternating sides.

Rounds alternate which side goes first (stock-zygote, zygote-stock, ...) so slow drifts in machine
load (thermal throttling, a neighbour's cron job) hit both sides equally. Each side round is a fresh
subprocess; the parent only spawns, samples memory and reads reports.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from zygote.bench.processes import SIDES, BenchError, Homes, Registry, Spawned, ZygoteServer, side_env
from zygote.bench.results import ChildRecord, RoundResult, SideOutput, read_side_output
from zygote.bench.sampler import Peak, TreeSampler

log = structlog.get_logger(__name__)

DEFAULT_SAMPLE_INTERVAL = 0.1
REFUSED_OUTCOMES = frozenset(
    {"zygote_unavailable", "overloaded", "rejected_path", "fork_refused", "forker_lost", "shutting_down",
     "version_mismatch", "config_mismatch", "internal", "fallback_local"}
)  # fmt: skip
"""Ledger outcomes meaning the zygote did not parse the file: such a round measured something else."""


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
    warnings: list[str] = field(default_factory=list)

    def run(self) -> None:
        for parallelism in self.config.parallelism:
            self.run_parallelism(parallelism)

    def run_parallelism(self, parallelism: int) -> None:
        """One zygote for all rounds at this parallelism; it is stopped even if a round blows up."""
        self.progress.step(f"P={parallelism}: starting the zygote")
        env = side_env(self.homes, "zygote", parallelism, self.config.approved_modules)
        server = ZygoteServer(self.registry, env, self.homes.root / "logs" / f"zygote-p{parallelism}.log")
        try:
            self.start_zygote(server, parallelism)
            self.progress.step(f"P={parallelism}: zygote ready", advance=1)
            for round_no in range(1, self.config.rounds + 1):
                for side in side_order(round_no):
                    self.run_one(side, parallelism, round_no, server)
            self.statuses[parallelism] = server.status()
        finally:
            server.stop()

    def start_zygote(self, server: ZygoteServer, parallelism: int) -> None:
        """Start the zygote, retrying once if it exits while starting up."""
        try:
            server.start()
        except BenchError as exc:
            if server.running:
                raise
            self.warnings.append(f"P={parallelism}: {server.restart()} (first start: {str(exc).splitlines()[0]})")

    def run_one(self, side: str, parallelism: int, round_no: int, server: ZygoteServer) -> None:
        self.progress.step(f"P={parallelism} round {round_no}/{self.config.rounds}: {side}")
        if side == "zygote" and not server.running:
            self.warnings.append(f"P={parallelism} round {round_no}: {server.restart()}")
        extra_roots = [server.pid] if side == "zygote" else []
        result = run_round(self, side, parallelism, round_no, extra_roots)
        where = f"P={parallelism} round {round_no} {side}"
        if not result.ok:
            self.errors.append(f"{where}: {result.error}")
            log.warning("bench.round_failed", side=side, parallelism=parallelism, round=round_no, error=result.error)
        elif failed := failed_outcomes(result.output):
            self.warnings.append(f"{where}: parse children failed: {failed}")
            log.warning("bench.children_failed", side=side, parallelism=parallelism, round=round_no, outcomes=failed)
        self.results[(parallelism, side)].append(result)
        self.progress.step(f"P={parallelism} round {round_no}/{self.config.rounds}: {side} done", advance=1)


def side_command(side: str, out: Path, child_dir: Path, steady: bool) -> list[str]:
    """The side subprocess's command line; rounds after the first are ``--steady`` (sides.run)."""
    return [sys.executable, "-m", "zygote.bench.sides", "--side", side, "--output", str(out),
            "--child-dir", str(child_dir), *(["--steady"] if steady else [])]  # fmt: skip


def wait_sampled(bench: Bench, started: Spawned, extra_roots: list[int]) -> tuple[TreeSampler, str | None]:
    """Sample the side's tree (plus the zygote's) until the side exits or times out; always stop it."""
    sampler = TreeSampler([started.pid, *extra_roots], bench.config.sample_interval).start()
    timeout = bench.config.timeout_for(bench.file_count)
    try:
        started.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return sampler, f"timed out after {timeout:.0f}s"
    finally:
        sampler.stop()
        bench.registry.stop(started)
    return sampler, None


def run_round(bench: Bench, side: str, parallelism: int, round_no: int, extra_roots: list[int]) -> RoundResult:
    """Spawn the side, sample it while it runs, read its report and judge whether the round counts."""
    tag, root = f"p{parallelism}-r{round_no}-{side}", bench.homes.root
    out = root / "rounds" / f"{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = side_env(bench.homes, side, parallelism, bench.config.approved_modules)
    began = time.monotonic()
    started = bench.registry.spawn(
        tag, side_command(side, out, root / "children" / tag, round_no > 1), env, root / "logs" / f"{tag}.log"
    )
    sampler, error = wait_sampled(bench, started, extra_roots)
    output = read_side_output(out) or SideOutput(side=side, parallelism=parallelism, error="no report written")
    error = error or _first_line(output.error) or _exit_error(started.popen.returncode) or _not_measured(output)
    merge_peaks(output.children, sampler.peaks)
    parse_pids = [c.pid for c in output.children if c.pid is not None]
    memory = sampler.window(output.run_started, output.run_ended, parse_pids)
    return RoundResult(side, parallelism, round_no, error is None, error, time.monotonic() - began, output, memory)


def _first_line(error: str | None) -> str | None:
    return error.strip().splitlines()[0] if error and error.strip() else None


def failed_outcomes(output: SideOutput) -> dict[str, int]:
    """How many children ended in each non-ok outcome."""
    return dict(Counter(c.outcome for c in output.children if c.outcome != "ok"))


def _not_measured(output: SideOutput) -> str | None:
    """A round that parsed nothing, or whose files the zygote refused, must not pass for a fast one."""
    if not any(f.parse_s is not None for f in output.files):
        return "no file was parsed"
    refused = {k: n for k, n in failed_outcomes(output).items() if k in REFUSED_OUTCOMES}
    return f"the zygote did not parse every file: {refused}" if refused else None


def _exit_error(code: int | None) -> str | None:
    return None if code == 0 else f"side process exited with code {code}"
