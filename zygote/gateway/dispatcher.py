"""Parse requests through the gateway: admit, hand to the serving generation, relay, reply once.

The dispatcher owns the :class:`RequestTable` and applies what happens to a request (a client's
``spawn``/``input``/``credit``/``signal``, a forker's ``started``/``exited``/``error``, a channel
read) through the table's transitions. It sends a request's terminal reply exactly once
(``RequestTable.mark_replied``), and ``exited`` only after every channel of the worker reached EOF.
"""

from __future__ import annotations

import math
import signal
import time
from collections import OrderedDict
from dataclasses import replace
from typing import Any

from protocol import Credit, Error, ErrorCode, Exited, Input, Output, Signal, Spawn, Started, outcome_of
from zygote import linux
from zygote.config import Settings
from zygote.gateway.allowed_paths import directory_refusal, path_refusal
from zygote.gateway.forker_link import ForkerLink
from zygote.gateway.generations import ForkerPool
from zygote.gateway.parse_gate import Passed, check_first_frame
from zygote.gateway.path_checks import PathChecks
from zygote.gateway.relay import MAX_PENDING_INPUT, InputOverflow, Relay
from zygote.gateway.requests import Request, RequestState, RequestTable
from zygote.gateway.sessions import Sessions
from zygote.gateway.status import REFUSALS, StatusBook
from zygote.logs import get_logger

log = get_logger(__name__)

VALID_SIGNALS = frozenset(int(signum) for signum in signal.valid_signals())
CREDIT_WINDOW = 4 * 1024 * 1024
FORKER_STALL_S = 2.0
"""An answer the serving forker has owed this long (a spawn, or the ``exited`` of a worker whose
channels ended; each takes milliseconds) means it is stopped or starved: new spawns are refused
``not_ready`` at once until it answers again, and finished workers are answered without it."""
RECENT_WORKERS = 4096
"""Worker pids remembered after they ended, to recognise a signal a worker sent just before dying."""


class Dispatcher:
    """Every open parse request and what moves it along."""

    def __init__(
        self, settings: Settings, roots: tuple[str, ...], sessions: Sessions, pool: ForkerPool, book: StatusBook
    ) -> None:
        self.settings = settings
        self.roots = roots
        """As configured (unresolved): every check resolves them (``allowed_paths``)."""
        self.sessions = sessions
        self.pool = pool
        self.book = book
        self.requests = RequestTable()
        self.checks = PathChecks()
        self.recent_workers: OrderedDict[int, None] = OrderedDict()

    def spawn(self, client: bytes, spawn: Spawn, process: dict[str, Any], draining: bool) -> None:
        """Accept ``spawn`` (or refuse it at once); its path is checked off the loop."""
        if (client, spawn.id) in self.requests:
            text = f"request {spawn.id} is open"
            self.sessions.send(client, Error(id=spawn.id, code=ErrorCode.DUPLICATE_ID.value, message=text))
            return
        if not (math.isfinite(spawn.timeout) and spawn.timeout > 0):
            # NaN would never expire in the forker; use the zygote's ceiling. Sanitised here only.
            spawn = replace(spawn, timeout=self.settings.worker_timeout)
        request = self.requests.accept(client, replace(spawn, process=process), time.monotonic())
        refusal = self._admission(draining)
        if refusal is not None:
            self.reply_error(request, *refusal)
            return
        roots = self.roots
        self.checks.submit(
            lambda: path_refusal(spawn.path, roots), lambda problem: self._path_checked(request, problem)
        )

    def _admission(self, draining: bool) -> tuple[ErrorCode, str] | None:
        """Refuse at once what cannot run soon: the client decides on fallback without waiting."""
        if draining:
            return ErrorCode.SHUTTING_DOWN, "the zygote is shutting down"
        if self.pool.serving() is None:
            return ErrorCode.NOT_READY, "no forker generation is ready (starting, restarting after a crash, or retired)"
        stalled = self.stalled_for(time.monotonic())
        if stalled >= FORKER_STALL_S:
            return ErrorCode.NOT_READY, f"the forker has not answered for {stalled:.1f} s (stopped or starved)"
        capacity = self.settings.max_workers + self.settings.max_queued
        if self.requests.running + self.requests.waiting > capacity:  # the new request is among them
            text = f"all {self.settings.max_workers} workers are busy and {self.settings.max_queued} requests wait"
            return ErrorCode.OVERLOADED, text
        return None

    def load(self, draining: bool) -> dict[str, Any]:
        """What the gateway can take now (SPEC 4b), for ``welcome`` and heartbeats."""
        forker = self.pool.serving()
        ready = forker is not None and not draining and self.stalled_for(time.monotonic()) < FORKER_STALL_S
        running, queued = self.requests.running, self.requests.waiting
        max_workers, max_queued = self.settings.max_workers, self.settings.max_queued
        return {
            "ready": ready,
            "early_input": True,
            "free": max(0, max_workers + max_queued - running - queued) if ready else 0,
            "running": running,
            "queued": queued,
            "max_workers": max_workers,
            "max_queued": max_queued,
            "generation": forker.generation if ready and forker is not None else 0,
            "gauges": self._gauges(forker),
        }

    def _gauges(self, forker: ForkerLink | None) -> dict[str, Any]:
        """Zygote-wide figures the client turns into metrics (README, "Metrics")."""
        refused = {code: count for code, count in self.book.outcomes.items() if code in REFUSALS}
        if forker is None:
            return {"refused": refused, "pooled": 0}
        sampled = self.book.forker_sample.gauges(forker.generation)
        return {"refused": refused, "frozen_objects": forker.frozen, **sampled}

    def stalled_for(self, now: float) -> float:
        """How long the serving forker has owed an answer (0 when it owes none)."""
        owed = self._owed_since()
        return now - min(owed) if owed else 0.0

    def stall_deadline(self) -> float | None:
        """The next moment an owed answer turns into a stall (a timer for the loop; passed ones are not)."""
        now = time.monotonic()
        deadlines = [since + FORKER_STALL_S for since in self._owed_since()]
        return min((d for d in deadlines if d > now), default=None)  # passed: no busy loop

    def _owed_since(self) -> list[float]:
        forker = self.pool.serving()
        return self.requests.owed_since(forker.generation) if forker is not None else []

    def on_stall(self, now: float) -> None:
        """While the forker owes answers for too long: nothing waits for it that need not.

        Queued requests end ``not_ready`` (the client parses them elsewhere), and a worker that
        finished (its channels ended, it is a zombie its stopped forker has not reaped) is answered
        from its exit status in ``/proc``: else each would hold a dag-processor parse slot for as
        long as the forker is stopped. The forker's own ``exited`` closes the slot later.
        """
        stalled = self.stalled_for(now)
        if stalled < FORKER_STALL_S:
            return
        self.cancel_queued(ErrorCode.NOT_READY, f"the forker has not answered for {stalled:.1f} s")
        due = now - FORKER_STALL_S
        for request in self.requests.live():
            finished = request.state is RequestState.RUNNING and 0 < request.channels_ended_at <= due
            if finished and not request.replied:
                self._answer_without_forker(request)

    def _answer_without_forker(self, request: Request) -> None:
        forker = self.pool.by_generation(request.generation)
        status = linux.zombie_status(request.pid, forker.pid) if forker is not None else None
        if status is None:
            return  # still running after closing its channels, or already reaped: the forker answers
        exit_code = linux.exit_code_from_status(status)
        stats = {"pid": request.pid, "wall_s": request.channels_ended_at - request.started_at}
        outcome = outcome_of(exit_code).value
        answer = Exited(id=request.spawn.id, exit_code=exit_code, outcome=outcome, stats=stats)
        if self._reply_exited(request, answer) is not None:
            log.warning(
                "request.answered_without_forker", request_id=request.spawn.id, pid=request.pid, exit_code=exit_code
            )

    def _path_checked(self, request: Request, problem: str) -> None:
        if request.replied:
            return
        if problem:
            self.reply_error(request, ErrorCode.REJECTED_PATH, problem)
            return
        if self.pool.draining:
            self.reply_error(request, ErrorCode.SHUTTING_DOWN, "the zygote is shutting down")
            return
        self.requests.admit(request)
        self.dispatch()
        if self.pool.serving() is None:
            self.cancel_queued(ErrorCode.NOT_READY, "no forker generation is ready")

    def dispatch(self) -> None:
        """Hand queued requests to the serving generation while worker slots are free."""
        forker = self.pool.serving()
        if forker is None:
            return
        while self.requests.running < self.settings.max_workers:
            request = self.requests.next_queued()
            if request is None:
                return
            self.requests.dispatch(request, forker.generation, time.monotonic())
            forker.send(replace(request.spawn, id=request.internal_id))
            request.spawn = replace(request.spawn, process={})  # the forker has it; the gateway forgets it

    def cancel_queued(self, code: ErrorCode, text: str) -> None:
        while (request := self.requests.next_queued()) is not None:
            self.reply_error(request, code, text)

    def worker_started(self, started: Started, fds: list[int]) -> None:
        relay = Relay.from_fds(fds, CREDIT_WINDOW, self.settings.worker_max_output)
        request = self.requests.started(started.id, started.pid, relay, time.monotonic())
        if request is None:
            return
        self._remember_worker(started.pid)
        self.book.fork_ms.add(started.fork_ms)
        self.sessions.send(request.client, replace(started, id=request.spawn.id))
        if request.early_input:
            early, request.early_input = bytes(request.early_input), bytearray()
            self._input(request, early)

    def _remember_worker(self, pid: int) -> None:
        self.recent_workers[pid] = None
        self.recent_workers.move_to_end(pid)
        while len(self.recent_workers) > RECENT_WORKERS:
            self.recent_workers.popitem(last=False)

    def worker_exited(self, exited: Exited) -> None:
        request = self.requests.exited(exited.id, exited, time.monotonic())
        if request is not None:
            self.maybe_complete(request)
            self.dispatch()

    def worker_failed(self, error: Error) -> None:
        request = self.requests.by_internal(error.id)
        if request is None:
            return
        self.requests.close_slot(request)
        self.reply_error(request, ErrorCode(error.code), error.message)
        self.dispatch()

    def generation_lost(self, generation: int) -> list[Request]:
        """The forker of ``generation`` died: its requests end ``forker_lost``; returns those that ran."""
        owed = self.requests.in_generation(generation)
        for request in owed:
            self.requests.close_slot(request)
            self.reply_error(request, ErrorCode.FORKER_LOST, f"forker generation {generation} died")
        return [r for r in owed if r.pid and r.exited is None]

    def relay_event(self, request: Request, channel: str, readable: bool, writable: bool) -> None:
        relay = request.relay
        if relay is None:
            return
        if writable:
            relay.flush_input()
        if not readable or channel not in relay.sockets:
            return
        data, still_open = relay.read(channel)
        if data and not request.replied:
            self.sessions.send(request.client, Output(id=request.spawn.id, channel=channel, data=data))
        if relay.take_marker() and not request.replied:
            marker = (
                f"[airflow-zygote] output limit of {relay.output_limit} bytes reached; further stdout/stderr dropped\n"
            )
            self.sessions.send(request.client, Output(id=request.spawn.id, channel="stderr", data=marker.encode()))
        if not still_open:
            if relay.all_closed:
                self.requests.channels_ended(request, time.monotonic())
            self.maybe_complete(request)

    def force_close_drained(self, now: float, drain_s: float) -> None:
        """Close the channels of exited workers after ``drain_s`` of readable time (a stray may hold them).

        Only time with credit counts: a client short of credit (busy, or stopped) has not read
        the worker's output yet, and closing then would drop the tail of its result.
        """
        for request in self.requests.live():
            if request.state is not RequestState.EXITED:
                continue
            if request.relay is not None and request.relay.credit > 0:
                request.drain_s += now - request.drain_mark
            request.drain_mark = now
            if request.drain_s > drain_s:
                log.warning("request.channels_forced_closed", request_id=request.spawn.id)
                if request.relay is not None:
                    request.relay.close_all()
                self.maybe_complete(request)

    def maybe_complete(self, request: Request) -> None:
        exited = request.exited
        if exited is None or (request.relay is not None and not request.relay.all_closed):
            return
        message = self._reply_exited(request, replace(exited, id=request.spawn.id))
        if message is not None:
            _log_finished(request, message)

    def _reply_exited(self, request: Request, exited: Exited) -> Exited | None:
        """Send ``exited`` (in the client's id), with ``output_dropped``, unless a terminal reply went already."""
        if not self.requests.mark_replied(request):
            return None
        dropped = request.relay.dropped if request.relay is not None else 0
        message = replace(exited, stats={**exited.stats, "output_dropped": dropped})
        self.book.finished(message)
        self.sessions.send(request.client, message)
        return message

    def reply_error(self, request: Request, code: ErrorCode, text: str) -> None:
        if self.requests.mark_replied(request):
            self.book.count(code.value)
            self.sessions.send(request.client, Error(id=request.spawn.id, code=code.value, message=text))
            log.info(
                "request.finished", request_id=request.spawn.id, file=request.spawn.path, outcome=code.value, error=text
            )

    def request_message(self, client: bytes, message: Input | Credit | Signal) -> None:
        request = self.requests.get((client, message.id))
        if request is None:
            text = f"no open request {message.id}"
            self.sessions.send(client, Error(id=message.id, code=ErrorCode.UNKNOWN_ID.value, message=text))
        elif isinstance(message, Credit):
            if request.relay is not None:
                request.relay.add_credit(message.size)
        elif isinstance(message, Input):
            self._input(request, message.data)
        elif message.signum in VALID_SIGNALS:
            self.signal(request, message.signum)
        else:
            # Session-level (empty id): an error with the request's id would end it for the client.
            text = f"signal {message.signum} for request {message.id} is not a signal number; ignored"
            self.sessions.send(client, Error(id="", code=ErrorCode.MALFORMED.value, message=text))

    def _input(self, request: Request, data: bytes) -> None:
        relay = request.relay
        if relay is None:
            self._hold_early_input(request, data)
            return
        try:
            relay.add_input(data)
        except InputOverflow as exc:
            self.signal(request, signal.SIGKILL)
            self.reply_error(request, ErrorCode.OVERSIZED, str(exc))
            return
        if relay.held:
            self._gate_input(request, relay)

    def _hold_early_input(self, request: Request, data: bytes) -> None:
        """Before ``started``: kept for the worker (the same bound as input it has not read)."""
        if request.replied or request.state is RequestState.EXITED:
            return
        if len(request.early_input) + len(data) > MAX_PENDING_INPUT:
            self.reply_error(
                request, ErrorCode.OVERSIZED, f"more than {MAX_PENDING_INPUT} bytes of input before a worker"
            )
            self.signal(request, signal.SIGKILL)  # after the reply: a request still queued is not "killed"
            return
        request.early_input += data

    def _gate_input(self, request: Request, relay: Relay) -> None:
        """Let input through once its first frame asks for the file the spawn named."""
        if request.gate_checking:
            return
        verdict = check_first_frame(relay.pending_input.data, request.spawn.path)
        if isinstance(verdict, str):
            self._refuse_input(request, relay, verdict)
        elif isinstance(verdict, Passed):
            request.gate_checking = True
            roots, bundle = self.roots, verdict.bundle_path
            self.checks.submit(
                lambda: directory_refusal(bundle, roots), lambda problem: self._gate_checked(request, problem)
            )

    def _gate_checked(self, request: Request, problem: str) -> None:
        request.gate_checking = False
        relay = request.relay
        if request.replied or relay is None:
            return
        if problem:
            self._refuse_input(request, relay, problem)
        else:
            relay.release()

    def _refuse_input(self, request: Request, relay: Relay, why: str) -> None:
        log.warning("request.input_refused", request_id=request.spawn.id, reason=why)
        relay.pending_input.clear()
        self.signal(request, signal.SIGKILL)
        self.reply_error(request, ErrorCode.REJECTED_PATH, why)

    def signal(self, request: Request, signum: int) -> None:
        if request.state in (RequestState.CHECKING, RequestState.QUEUED):
            self._reply_exited(request, Exited(id=request.spawn.id, exit_code=-signum, outcome="killed", stats={}))
            return
        forker = self.pool.by_generation(request.generation)
        if forker is not None and request.slot_open:
            forker.send(Signal(id=request.internal_id, signum=signum))

    def client_gone(self, client: bytes) -> int:
        """The client's session ended: its requests are settled, its workers killed. Returns how many."""
        orphans = self.requests.of_client(client)
        for request in orphans:
            if self.requests.mark_replied(request):
                self.book.count(ErrorCode.CLIENT_GONE.value)
            if request.slot_open:
                self.signal(request, signal.SIGKILL)
        return len(orphans)


def _log_finished(request: Request, message: Exited) -> None:
    stats = message.stats
    log.info(
        "request.finished",
        request_id=request.spawn.id,
        file=request.spawn.path,
        outcome=message.outcome,
        exit_code=message.exit_code,
        wall_s=round(stats.get("wall_s", 0.0), 4),
        fork_ms=round(stats.get("fork_ms", 0.0), 3),
        peak_uss=stats.get("peak_uss"),
        peak_pss=stats.get("peak_pss"),
        queued_s=round(request.exited_at - request.accepted_at - stats.get("wall_s", 0.0), 4),
    )
