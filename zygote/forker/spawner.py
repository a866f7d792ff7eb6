"""From a ``spawn`` to a running, tracked worker, and from its report back into the forker's books.

How this works: :meth:`Spawner.spawn` hands the request to an idle warm-pool worker of the
request's session (ADR 0006) or forks a fresh one; either way the worker is entered in the
:class:`WorkerTable` with its deadline, its report socket is watched by the loop's selector, and
``started`` goes to the gateway with the worker's relayed channel ends. Each worker's exit report
feeds the preloader, the import-cost advice and the table (which may answer the request from it).
A failed fork answers its one request; a failed fork-safety check also raises
:class:`ForkRefused` so the loop retires.
"""

from __future__ import annotations

import errno
import selectors
import time
from collections.abc import Callable
from typing import Any

from protocol import Error, ErrorCode, Message, Spawn, Started, WorkerReport
from zygote.config import Settings
from zygote.forker.children import ForkRefused, fork_child
from zygote.forker.frames import ChildReader
from zygote.forker.measure import ModuleBaseline
from zygote.forker.pool_keeper import PoolKeeper
from zygote.forker.preload import Preloader
from zygote.forker.worker import ChannelPairs, worker_body
from zygote.forker.worker_table import Action, Worker, WorkerTable
from zygote.logs import get_logger

log = get_logger(__name__)

DEADLINE_GRACE_S = 5.0
"""The zygote's deadline trails the client's timeout so Airflow's own kill path acts first."""

Send = Callable[[Message, "list[int] | None"], None]


class Spawner:
    """One forker generation's way from spawns to workers, and from workers' reports to its books."""

    def __init__(
        self,
        settings: Settings,
        generation: int,
        selector: selectors.BaseSelector,
        table: WorkerTable,
        preloader: Preloader,
        pool: PoolKeeper,
        send: Send,
        act: Callable[[list[Action]], None],
    ) -> None:
        self.settings = settings
        self.generation = generation
        self.selector = selector
        self.table = table
        self.preloader = preloader
        self.pool = pool
        self.send = send
        self.act = act
        self.reports: dict[int, ChildReader] = {}
        self.import_costs: dict[str, float] = {}
        self.fork_failures = 0

    def spawn(self, spawn: Spawn, baseline_modules: ModuleBaseline) -> None:
        """Start ``spawn``'s worker; raises :class:`ForkRefused` (after refusing it) when forking is unsafe."""
        received = time.monotonic()
        pooled = self.pool.take(spawn)
        if pooled is not None:
            self._track(spawn, pooled.pid, pooled.pairs, received, pooled=True)
            return
        try:
            pairs = ChannelPairs.create()
        except OSError as exc:
            self._fork_failed(spawn, "could not make the worker's sockets", exc)
            return
        body = worker_body(pairs, spawn, self.pool.limits, baseline_modules)
        try:
            pid = fork_child(body, pairs.child_fds(), quiet=False)
        except ForkRefused as exc:
            pairs.close_all()
            self.refuse(spawn, ErrorCode.FORK_REFUSED, str(exc))
            raise
        except OSError as exc:
            pairs.close_all()
            self._fork_failed(spawn, "could not fork a worker", exc)
            return
        self._track(spawn, pid, pairs, received)

    def refuse(self, spawn: Spawn, code: ErrorCode, why: str) -> None:
        log.error("forker.fork_refused", request_id=spawn.id, code=code.value, reason=why)
        self.send(Error(id=spawn.id, code=code.value, message=why), None)

    def _fork_failed(self, spawn: Spawn, what: str, exc: OSError) -> None:
        self.fork_failures += 1
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        self.refuse(spawn, ErrorCode.FORK_FAILED, f"{what}: {name} ({exc.strerror})")

    def _track(self, spawn: Spawn, pid: int, pairs: ChannelPairs, started: float, *, pooled: bool = False) -> None:
        fork_ms = (time.monotonic() - started) * 1000
        pairs.close_child_ends()
        # The gateway sanitised spawn.timeout; the grace lets Airflow's own kill path act first.
        timeout = min(spawn.timeout + DEADLINE_GRACE_S, self.settings.worker_timeout)
        worker = Worker(spawn.id, pid, started, started + timeout, fork_ms, spawn.path)
        worker.extra["generation"] = self.generation
        worker.extra["pooled"] = pooled
        worker.extra["received_monotonic"] = started  # with the client's send time: where dispatch goes
        self.table.add(worker)
        report = pairs.parent["report"]
        report.setblocking(False)
        self.reports[pid] = ChildReader(report)
        self.selector.register(report, selectors.EVENT_READ, lambda: self.read_report(pid))
        started_msg = Started(id=spawn.id, pid=pid, generation=self.generation, fork_ms=fork_ms)
        self.send(started_msg, pairs.relayed_parent_fds())
        pairs.close_relayed_parent_ends()
        log.debug("worker.spawned", request_id=spawn.id, pid=pid, fork_ms=round(fork_ms, 3), pooled=pooled)

    def read_report(self, pid: int, budget: int | None = None) -> None:
        reader = self.reports.get(pid)
        if reader is None:
            return
        for message in reader.read() if budget is None else reader.read(budget):
            if isinstance(message, WorkerReport):
                if "report_error" in message.ending:
                    log.warning("worker.report_failed", pid=pid, error=str(message.ending["report_error"]))
                self.preloader.observe_parse(message.modules)
                self._count_import_costs(message.modules)
                self.act(self.table.record_report(pid, message, time.monotonic()))
        if not reader.open:
            self.forget_report(pid)

    def forget_report(self, pid: int) -> None:
        reader = self.reports.pop(pid, None)
        if reader is not None:
            self.selector.unregister(reader.sock)
            reader.close()

    def _count_import_costs(self, modules: dict[str, Any]) -> None:
        """Sum the import time of each unapproved top-level import, for preload advice."""
        for name, seconds in modules.items():
            parent = name.rpartition(".")[0]
            if parent in modules or self.preloader.approved.matches(name) or not seconds:
                continue
            self.import_costs[name] = self.import_costs.get(name, 0.0) + float(seconds)
