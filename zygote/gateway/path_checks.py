"""Filesystem checks off the gateway's loop: a small thread pool, answers back through the poll loop.

A path check resolves symlinks and stats files; on a stalled network mount (NFS, EFS, gcsfuse)
that can block for seconds. In the loop it would stop every session's heartbeats; here it holds
up only the request it is for. Each check runs in a pool thread; its answer waits in a queue and
a byte on a socketpair wakes the loop, which runs the callback (on the loop's thread, so the
gateway's state is only ever touched there). The threads never touch ZeroMQ or the gateway's
state, and inherit its blocked signal mask (the signalfd is made before they start).
"""

from __future__ import annotations

import contextlib
import queue
import socket
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from zygote.logs import get_logger

log = get_logger(__name__)

THREADS = 4

Callback = Callable[[str], None]


class PathChecks:
    """Run ``check() -> refusal text`` in a thread; call ``then(refusal)`` later in the loop."""

    def __init__(self, threads: int = THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="path-check")
        self._done: queue.SimpleQueue[tuple[Callback, str]] = queue.SimpleQueue()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self.pending = 0

    def fileno(self) -> int:
        return self._wake_read.fileno()

    def submit(self, check: Callable[[], str], then: Callback) -> None:
        self.pending += 1
        future = self._pool.submit(check)
        future.add_done_callback(lambda done: self._finished(done, then))

    def _finished(self, future: Future[str], then: Callback) -> None:
        """In the pool thread: queue the answer and wake the loop."""
        try:
            refusal = future.result()
        except Exception as exc:  # a check must never let a path through unchecked
            refusal = f"the path check failed: {exc!r}"[:500]
        self._done.put((then, refusal))
        with contextlib.suppress(BlockingIOError):  # already woken: the loop drains the whole queue
            self._wake_write.send(b"\0")

    def run_callbacks(self) -> None:
        """In the loop: deliver every finished check."""
        with contextlib.suppress(BlockingIOError):
            while self._wake_read.recv(4096):
                pass
        while True:
            try:
                then, refusal = self._done.get_nowait()
            except queue.Empty:
                return
            self.pending -= 1
            try:
                then(refusal)
            except Exception:
                log.exception("gateway.internal_error", target="path_check")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._wake_read.close()
        self._wake_write.close()
