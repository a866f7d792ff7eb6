"""Preload probes: the throwaway child that vets candidates, and the runner that schedules it.

How this works: :class:`ProbeRunner` works in **rounds**. A round takes everything the
:class:`~zygote.forker.preload.Preloader` has pending and forks one probe child for it through
:func:`~zygote.forker.children.fork_child`. A child that stops early (a module left a thread, or
the child died) has its culprit rejected and the rest of the round goes to a fresh child at once,
so one bad module never taints the verdicts on the others. When the round's modules all have a
verdict, what passed and is worth holding is promoted into the forker with **one** collect and
freeze (and one eviction of the warm pool). A new round starts at most once per
``preload_interval`` (:class:`~zygote.forker.promotion.RoundClock`): modules workers report in
the meantime wait for it, so a cold pass pays a few promotions, not one per module. At start-up
the forker runs a round synchronously (:meth:`ProbeRunner.run_blocking`); in the loop, one probe
child at a time runs beside the workers, its socket registered with the loop's selector and its
deadline among the loop's timers.

The child imports the batch in order and, after each module, checks that it still has one thread,
no new fd, no child process, the same GC settings, and that the import stayed within time and
memory bounds; it stops at the first safety violation (the process is tainted from there on).
Then it forks once and checks the same again (``at_fork.py``): a module whose at-fork hook left
something is convicted, and what no hook explains sends the verified modules back to be probed
apart (:attr:`ProbeRunner.apart`), so the innocent ones of the round are still promoted.
"""

from __future__ import annotations

import gc
import importlib
import os
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from protocol import Message, ProbeReport, frame
from zygote import linux
from zygote.forker.at_fork import AtForkHooks, Finding, fork_once
from zygote.forker.children import ForkRefused, fork_child
from zygote.forker.frames import ChildReader, reap_blocking
from zygote.forker.preload import ModuleState, Preloader, ProbeBounds, summary
from zygote.forker.promotion import RoundClock
from zygote.forker.verdicts import TEST_FORK, Fault
from zygote.logs import get_logger

log = get_logger(__name__)

RETRY_AFTER_S = 1.0
"""After a probe could not be forked, the batch waits this long before the next attempt."""


@dataclass
class Probe:
    pid: int
    reader: ChildReader
    batch: list[str]
    deadline_at: float
    forked: ProbeReport | None = None
    """The test fork's verdict, once the child sent it."""


class ProbeRunner:
    """At most one probe child at a time; verdicts go to the preloader, promotions happen here."""

    def __init__(
        self, preloader: Preloader, bounds: ProbeBounds, selector: selectors.BaseSelector, interval_s: float = 0.0
    ) -> None:
        self.preloader = preloader
        self.bounds = bounds
        self.selector = selector
        self.clock = RoundClock(interval_s)
        self.probe: Probe | None = None
        self.round: list[str] = []
        """Modules of the running round still waiting for a verdict (the next child takes them)."""
        self.apart: list[list[str]] = []
        """Groups of the round to probe each in a child of its own (a test fork they failed together)."""
        self.not_before = 0.0
        self.parses_judged = 0
        """Parses the preloader had counted when the last round ended: worth changes only with more."""

    @property
    def pid(self) -> int | None:
        return self.probe.pid if self.probe else None

    @property
    def promoting(self) -> bool:
        """A round is under way: verdicts may be in, but what is worth holding is not decided yet."""
        return self.probe is not None or bool(self.round)

    def deadline(self) -> float | None:
        if self.probe is not None:
            return self.probe.deadline_at
        if self.round:
            return self.not_before
        return max(self.clock.due_at(), self.not_before) if self.preloader.has_pending() else None

    def run_blocking(self) -> list[str]:
        """One round, synchronously (start-up only). Returns the promoted."""
        self.round = self.preloader.pending()
        while batch := self._next_batch():
            probe = self._fork(batch)
            if probe is None:
                break
            messages = probe.reader.read_until_eof(probe.deadline_at)
            linux.kill_quietly(probe.pid)
            exit_code = reap_blocking(probe.pid)
            probe.reader.close()
            self._merge(probe, messages, exit_code)
        return self._end_round(time.monotonic())

    def maybe_start(self, now: float) -> list[str]:
        """Start the next probe child of the round, or a new round when due. Returns what was promoted.

        A due round with nothing to probe still promotes the verified modules that became worth it.
        """
        if self.probe is not None or now < self.not_before:
            return []
        if not self.round:
            if not self.clock.is_due(now):
                return []
            self.round = self.preloader.pending()
            if not self.round:
                return self._promote_grown(now)
        batch = self._next_batch()
        if not batch:  # the rest of the round came in with a promotion meanwhile
            return self._end_round(now)
        self._start(batch)
        return []

    def _promote_grown(self, now: float) -> list[str]:
        """Nothing to probe: promote the verified modules whose worth grew with the parses since."""
        if self.preloader.parses == self.parses_judged:
            return []
        self.parses_judged = self.preloader.parses
        chosen = self.preloader.worth_promoting()
        return self._end_round(now, chosen) if chosen else []

    def _next_batch(self) -> list[str]:
        """The next group to probe apart, else everything of the round still pending; now PROBING."""
        while self.apart:
            batch = self.preloader.take_batch(self.apart.pop(0))
            if batch:
                return batch
        return self.preloader.take_batch(self.round)

    def _start(self, batch: list[str]) -> None:
        probe = self._fork(batch)
        if probe is None:
            return
        probe.reader.sock.setblocking(False)
        self.probe = probe
        self.selector.register(probe.reader.sock, selectors.EVENT_READ, self.on_readable)
        log.info("preload.probing", modules=len(probe.batch), first=probe.batch[0], round=self.clock.rounds + 1)

    def on_readable(self) -> None:
        if self.probe is not None:
            self._take(self.probe, self.probe.reader.read())

    def on_timer(self, now: float) -> None:
        if self.probe is not None and now >= self.probe.deadline_at:
            linux.kill_quietly(self.probe.pid)

    def kill(self) -> None:
        if self.probe is not None:
            linux.kill_quietly(self.probe.pid)

    def on_reaped(self, exit_code: int) -> list[str]:
        """The probe child was waited for: merge its verdicts; promote if the round is done."""
        assert self.probe is not None
        probe, self.probe = self.probe, None
        messages = probe.reader.read()
        self.selector.unregister(probe.reader.sock)
        probe.reader.close()
        self._merge(probe, messages, exit_code)
        return [] if self.round else self._end_round(time.monotonic())

    def _fork(self, batch: list[str]) -> Probe | None:
        report_r, report_w = socket.socketpair()
        try:
            pid = fork_child(_probe_body(batch, report_w, self.bounds), {report_w.fileno()}, quiet=True)
        except (OSError, ForkRefused) as exc:
            report_r.close()
            self.preloader.on_probe_end(batch, "")  # back to pending: the modules are not at fault
            self.not_before = time.monotonic() + RETRY_AFTER_S
            log.warning("preload.probe_not_forked", modules=len(batch), error=str(exc))
            return None
        finally:
            report_w.close()
        deadline = time.monotonic() + self.bounds.timeout_s * len(batch) + 5
        return Probe(pid, ChildReader(report_r), batch, deadline)

    def _take(self, probe: Probe, messages: list[Message]) -> None:
        """Verdicts to the preloader; the test fork's verdict kept for the probe's end."""
        for message in messages:
            if isinstance(message, ProbeReport) and message.module == TEST_FORK:
                probe.forked = message
            elif isinstance(message, ProbeReport):
                self.preloader.on_probe_report(message)

    def _merge(self, probe: Probe, messages: list[Message], exit_code: int) -> None:
        """Verdicts in; the culprit of an early death rejected; the rest of the round kept for the next child.

        A test fork that left something no module's hook explains (or that never finished) sends
        the modules this child verified back to be probed apart, halves at a time, until a child
        that imported only one of them convicts it.
        """
        self._take(probe, messages)
        batch, forked = probe.batch, probe.forked
        why = "" if exit_code == 0 else f"probe ended with {exit_code} (import crashed or timed out)"
        records = self.preloader.records
        if not why and all(records[name].state is ModuleState.PROBING for name in batch):
            why = "probe ended without a verdict"  # no progress: blame the first, or the round never ends
        apart = self.preloader.on_probe_end(batch, why, forked)
        if apart:
            log.info(
                "preload.probing_apart", groups=[len(group) for group in apart], reason=forked.reason if forked else why
            )
        self.apart += apart
        self.round = [name for name in self.round if self.preloader.records[name].state is ModuleState.PENDING]

    def _end_round(self, now: float, chosen: list[str] | None = None) -> list[str]:
        """One promotion for the whole round: import what is worth it (``chosen`` when judged already)."""
        self.round, self.apart = [], []
        self.parses_judged = self.preloader.parses
        promoted = self.preloader.promote(self.preloader.worth_promoting() if chosen is None else chosen)
        self.clock.ended(now)
        return promoted


def _probe_body(modules: list[str], report: socket.socket, bounds: ProbeBounds) -> Callable[[], int]:
    def body() -> int:
        try:
            return _probe_all(modules, report, bounds)
        finally:
            for pid in linux.child_pids(os.getpid()):  # what a rejected import started dies with the probe
                linux.kill_quietly(pid)

    return body


def _probe_all(modules: list[str], report: socket.socket, bounds: ProbeBounds) -> int:
    """Import and check each module, then fork once and blame what the fork left (``at_fork.py``)."""
    hooks = AtForkHooks()
    hooks.install()
    verified: dict[str, ProbeReport] = {}
    for name in modules:
        hooks.importing = name
        verdict, clean = _probe_one(name, bounds)
        report.sendall(frame(verdict))
        if verdict.ok:
            verified[name] = verdict
        if not clean:
            break
    hooks.importing = ""
    if verified:
        for message in _fork_verdicts(hooks, verified, bounds):
            report.sendall(frame(message))
    return 0


def _fork_verdicts(hooks: AtForkHooks, verified: dict[str, ProbeReport], bounds: ProbeBounds) -> list[Message]:
    """The verified modules a test fork convicts (their hooks), then what it left unexplained."""
    unexplained = fork_once(hooks, bounds.timeout_s)
    convicted: list[Message] = [
        replace(verified[name], ok=False, kind=fault.value, reason=reason)
        for name, (fault, reason) in hooks.blamed.items()
        if name in verified
    ]
    kind, reason = (unexplained[0].value, unexplained[1]) if unexplained else ("", "")
    verdict = ProbeReport(
        module=TEST_FORK, ok=unexplained is None, reason=reason, import_s=0.0, memory_delta=0, kind=kind
    )
    return [*convicted, verdict]


def _probe_one(name: str, bounds: ProbeBounds) -> tuple[ProbeReport, bool]:
    """The verdict on ``name``, and whether this process is still clean enough to probe another.

    A failed import is checked like a successful one: it may have started a thread or opened a
    socket before it raised, which the next module's verdict must not be blamed for.
    """
    fds_before = linux.open_fds()
    gc_before = (gc.isenabled(), gc.get_threshold())
    rss_before = linux.rss_bytes()
    start = time.perf_counter()
    failure = ""
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failure = "import failed: " + summary(exc)
    elapsed = time.perf_counter() - start
    delta = linux.rss_bytes() - rss_before
    violation = _violation(fds_before, gc_before, delta, elapsed, bounds)
    reason = "; ".join(part for part in (failure, violation[1] if violation else "") if part)
    kind = violation[0] if violation else Fault.IMPORT_FAILED if failure else None
    report = ProbeReport(
        module=name, ok=not reason, reason=reason, import_s=elapsed, memory_delta=delta, kind=kind.value if kind else ""
    )
    return report, violation is None


def _violation(
    fds_before: set[int],
    gc_before: tuple[bool, tuple[int, ...]],
    delta: int,
    elapsed: float,
    bounds: ProbeBounds,
) -> Finding | None:
    threads = linux.native_thread_count()
    if threads != 1:
        return Fault.THREAD, f"left {threads - 1} thread(s) running after import"
    new_fds = linux.open_fds() - fds_before
    if new_fds:
        return Fault.FD, f"left {len(new_fds)} file descriptor(s) open: {_describe_fds(new_fds)}"
    children = linux.child_pids(os.getpid())
    if children:
        return Fault.CHILD, f"started {len(children)} child process(es)"
    if (gc.isenabled(), gc.get_threshold()) != gc_before:
        return Fault.GC, "changed the garbage collector's settings"
    if elapsed > bounds.timeout_s:
        return Fault.TIMEOUT, f"import took {elapsed:.1f} s, over {bounds.timeout_s:.0f} s"
    if bounds.memory_bytes and delta > bounds.memory_bytes:
        return Fault.MEMORY, f"import added {delta // 2**20} MiB, over {bounds.memory_bytes // 2**20} MiB"
    return None


def _describe_fds(fds: set[int]) -> str:
    targets = []
    for fd in sorted(fds)[:5]:
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            targets.append(str(fd))
    return ", ".join(targets)
