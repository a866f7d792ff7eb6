"""PathChecks: a check that stalls (a hung network mount) holds up only its own answer."""

from __future__ import annotations

import select
import threading

from zygote.gateway.path_checks import PathChecks


def _wait_readable(checks: PathChecks, timeout: float) -> bool:
    return bool(select.select([checks.fileno()], [], [], timeout)[0])


def test_a_stalled_check_does_not_delay_the_others_or_the_caller() -> None:
    checks = PathChecks(threads=2)
    stall = threading.Event()
    answers: list[tuple[str, str]] = []
    try:
        checks.submit(lambda: "stalled" if stall.wait(10) else "timed out", lambda r: answers.append(("slow", r)))
        checks.submit(lambda: "", lambda r: answers.append(("fast", r)))
        assert _wait_readable(checks, 5)
        checks.run_callbacks()
        assert answers == [("fast", "")] and checks.pending == 1
        stall.set()
        assert _wait_readable(checks, 5)
        checks.run_callbacks()
        assert answers == [("fast", ""), ("slow", "stalled")] and checks.pending == 0
    finally:
        stall.set()
        checks.close()


def test_a_check_that_raises_refuses_instead_of_passing() -> None:
    checks = PathChecks(threads=1)
    answers: list[str] = []

    def broken() -> str:
        raise OSError("stale file handle")

    try:
        checks.submit(broken, answers.append)
        assert _wait_readable(checks, 5)
        checks.run_callbacks()
        assert len(answers) == 1 and "stale file handle" in answers[0]
    finally:
        checks.close()
