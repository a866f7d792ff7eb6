"""DAG files that misbehave at parse time: each ends in one recorded outcome and the zygote keeps serving.

One zygote for the module, with small limits so the runaway cases end fast: a 4 s wall-time ceiling,
2 s of CPU, 256 open files, 300 MiB of USS, 64 KiB of relayed stdout+stderr. The client side is Airflow's own
``DagFileProcessorProcess`` machinery (``ParseDriver``) over a ``ZygoteConnection``, whose ledger
must balance after every scenario.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagfiles import simple_dag, write
from hostile_support import Hostile, HostileClient, RawLedger, assert_ledger_balanced, hostile_zygote
from zygote_harness import ParseDriver, ParseOutcome, pid_alive, spawn_message, wait_for

pytestmark = pytest.mark.e2e

WORKER_TIMEOUT_S = 4
CPU_LIMIT_S = 2
OPEN_FILES = 256
MEMORY_LIMIT_MIB = 300
MAX_OUTPUT = 64 * 1024
MARKER = "# airflow DAG\nimport os, sys, signal, time\n"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    with hostile_zygote(
        tmp_path_factory.mktemp("dagfiles"),
        "dagfiles",
        AIRFLOW__ZYGOTE__WORKER_TIMEOUT=str(WORKER_TIMEOUT_S),
        AIRFLOW__ZYGOTE__WORKER_CPU_LIMIT=str(CPU_LIMIT_S),
        AIRFLOW__ZYGOTE__WORKER_OPEN_FILES=str(OPEN_FILES),
        AIRFLOW__ZYGOTE__WORKER_MEMORY_LIMIT=str(MEMORY_LIMIT_MIB),
        AIRFLOW__ZYGOTE__WORKER_MAX_OUTPUT=str(MAX_OUTPUT),
    ) as zygote:
        yield zygote


def _parse(driver: ParseDriver, conn: Any, hostile: Hostile, path: Path, timeout: float = 60.0) -> ParseOutcome:
    return driver.finish(driver.start_zygote(conn, path, hostile.dags, timeout=timeout), timeout=timeout)


def _one_entry(conn: Any) -> Any:
    assert_ledger_balanced(conn.ledger, requests=1)
    return conn.ledger.entries[0]


def _dag_ids(outcome: ParseOutcome) -> list[str]:
    if outcome.result is None:
        return []
    return [dag.data["dag"]["dag_id"] for dag in outcome.result.serialized_dags]


CPU_LIMIT_SIGNALS = (-signal.SIGKILL, -signal.SIGXCPU)
"""RLIMIT_CPU with hard == soft (today's worker) kills with SIGKILL; with hard > soft, SIGXCPU first."""

SPIN_ENDINGS = ("signaled", "deadline")
"""A worker spinning in a fault handler meets its CPU limit (2 s) before its wall deadline (4 s) only
when it gets more than half a core; on a loaded machine the deadline comes first. Either ends it."""

ENDINGS: dict[str, tuple[str, tuple[int, ...] | None, tuple[str, ...]]] = {
    # name: (body, expected exit codes, expected ledger outcomes)
    "raises": ("raise ValueError('parse-time failure')", (0,), ("exited",)),
    "sys_exit": ("sys.exit(1)", (0,), ("exited",)),
    "os_exit": ("os._exit(7)", (7,), ("failed",)),
    "segfault": (
        "import ctypes; signal.signal(signal.SIGSEGV, signal.SIG_DFL); ctypes.string_at(0)",
        (-signal.SIGSEGV,),
        ("signaled",),
    ),
    # Airflow's importer installs a Python SIGSEGV handler: the fault repeats forever (stock too)
    # until something stops the spinning worker; here its CPU limit or its deadline does.
    "segfault_under_airflow_handler": ("import ctypes; ctypes.string_at(0)", CPU_LIMIT_SIGNALS, SPIN_ENDINGS),
    "closes_stdio": ("os.close(0); os.close(1); os.close(2)", None, ()),
}


@pytest.mark.parametrize("name", sorted(ENDINGS))
def test_dag_file_that_ends_badly(name: str, hostile: Hostile, conn: Any, driver: ParseDriver) -> None:
    base = hostile.baseline()
    body, exit_codes, outcomes = ENDINGS[name]
    path = write(hostile.dags, f"{name}.py", MARKER + body + "\n")
    parsed = _parse(driver, conn, hostile, path)
    entry = _one_entry(conn)
    assert entry.exit_code == int(parsed.exit_code)
    if exit_codes is not None:
        assert int(parsed.exit_code) in exit_codes and entry.outcome in outcomes, parsed.log_text[-2000:]
    if name == "raises":
        assert "parse-time failure" in str(parsed.result.import_errors)
    hostile.assert_recovered(base, conn.ledger)


def test_loop_forever_is_ended_by_the_cpu_limit(hostile: Hostile, conn: Any, driver: ParseDriver) -> None:
    base = hostile.baseline()
    path = write(hostile.dags, "spins.py", MARKER + "while True:\n    pass\n")
    parsed = _parse(driver, conn, hostile, path)
    entry = _one_entry(conn)
    used = entry.stats["cpu_user_s"] + entry.stats["cpu_system_s"]
    if entry.outcome == "deadline":  # it got less than half a core (a loaded machine): the deadline came first
        assert used < CPU_LIMIT_S and parsed.exit_code == -signal.SIGKILL, (used, parsed.exit_code)
    else:
        assert entry.outcome == "signaled" and parsed.exit_code in CPU_LIMIT_SIGNALS
        assert f"[airflow-zygote] killed: CPU time limit {CPU_LIMIT_S} s" in parsed.log_text
        assert CPU_LIMIT_S - 0.5 < used < CPU_LIMIT_S + 1
    hostile.assert_recovered(base, conn.ledger)


def test_sleeping_past_the_ceiling_is_ended_by_the_zygote_deadline(
    hostile: Hostile, conn: Any, driver: ParseDriver
) -> None:
    """A worker that uses no CPU (blocked in the kernel) is stopped by the wall-time ceiling instead."""
    base = hostile.baseline()
    path = write(hostile.dags, "naps.py", MARKER + "import select\nselect.select([], [], [], 10**6)\n")
    parsed = _parse(driver, conn, hostile, path)
    entry = _one_entry(conn)
    assert (entry.outcome, parsed.exit_code) == ("deadline", -signal.SIGKILL)
    assert "[airflow-zygote] killed: zygote deadline" in parsed.log_text
    assert WORKER_TIMEOUT_S <= entry.stats["wall_s"] < WORKER_TIMEOUT_S + 2
    hostile.assert_recovered(base, conn.ledger)


def test_open_files_are_limited(hostile: Hostile, conn: Any, driver: ParseDriver, tmp_path: Path) -> None:
    base = hostile.baseline()
    count = tmp_path / "opened"
    body = (
        "hoard = []\ntry:\n    while True:\n        hoard.append(open('/dev/null'))\n"
        "except OSError as exc:\n    error = exc.errno\n"
        "for handle in hoard:\n    handle.close()\n"
        f"open({str(count)!r}, 'w').write(f'{{len(hoard)}} {{error}}')\n"
    )
    path = write(hostile.dags, "hoards_fds.py", simple_dag("hoards_fds") + "import os\n" + body)
    parsed = _parse(driver, conn, hostile, path)
    assert parsed.exit_code == 0 and _dag_ids(parsed) == ["hoards_fds"], parsed.log_text[-2000:]
    opened, errno_ = (int(n) for n in count.read_text().split())
    assert opened < OPEN_FILES and errno_ == 24  # EMFILE
    hostile.assert_recovered(base, conn.ledger)


def test_sleep_forever_is_ended_by_the_client(hostile: Hostile, conn: Any, driver: ParseDriver, tmp_path: Path) -> None:
    """Airflow's own processor-timeout path: the manager kills the process; the kill reaches the worker."""
    base = hostile.baseline()
    asleep = tmp_path / "asleep"
    path = write(hostile.dags, "sleeps.py", MARKER + f"open({str(asleep)!r}, 'w').close()\ntime.sleep(10**6)\n")
    proc = driver.start_zygote(conn, path, hostile.dags)
    wait_for(asleep.exists, 30, "the DAG file to start sleeping")
    proc.kill(signal.SIGKILL)
    parsed = driver.finish(proc)
    assert parsed.exit_code == -signal.SIGKILL
    assert _one_entry(conn).outcome == "killed"
    hostile.assert_recovered(base, conn.ledger)


def test_signal_handlers_in_the_dag_do_not_stop_the_kill(
    hostile: Hostile, conn: Any, driver: ParseDriver, tmp_path: Path
) -> None:
    base = hostile.baseline()
    ready = tmp_path / "handlers-installed"
    body = (
        "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD):\n"
        "    signal.signal(s, signal.SIG_IGN)\n"
        f"open({str(ready)!r}, 'w').close()\n"
        "time.sleep(10**6)\n"
    )
    proc = driver.start_zygote(conn, write(hostile.dags, "handlers.py", MARKER + body), hostile.dags)
    wait_for(ready.exists, 30, "the DAG file to install its handlers")
    proc.kill(signal.SIGINT, escalation_delay=0.5, force=True)  # SIGINT, SIGTERM: ignored; SIGKILL is not
    parsed = driver.finish(proc)
    assert parsed.exit_code == -signal.SIGKILL
    assert _one_entry(conn).outcome == "killed"
    hostile.assert_recovered(base, conn.ledger)


def test_unbounded_allocation_hits_the_memory_limit(hostile: Hostile, conn: Any, driver: ParseDriver) -> None:
    base = hostile.baseline()
    body = "hoard = []\nwhile True:\n    hoard.append(b'x' * 8 * 2**20)\n    time.sleep(0.01)\n"
    parsed = _parse(driver, conn, hostile, write(hostile.dags, "hoards.py", MARKER + body))
    entry = _one_entry(conn)
    assert (entry.outcome, parsed.exit_code) == ("memory_limit", -signal.SIGKILL)
    assert f"killed: memory limit {MEMORY_LIMIT_MIB} MiB" in parsed.log_text
    assert MEMORY_LIMIT_MIB * 2**20 < entry.stats["peak_uss"] < 2 * MEMORY_LIMIT_MIB * 2**20
    hostile.assert_recovered(base, conn.ledger)


def test_children_that_outlive_the_parse_are_killed(
    hostile: Hostile, conn: Any, driver: ParseDriver, tmp_path: Path
) -> None:
    """A plain child, a child in its own session, and a double-forked daemon: all killed with the worker."""
    base = hostile.baseline()
    pids = tmp_path / "pids"
    body = (
        "import subprocess\n"
        f"def note(pid):\n    with open({str(pids)!r}, 'a') as f:\n        f.write(f'{{pid}}\\n')\n"
        "note(subprocess.Popen(['sleep', '600']).pid)\n"
        "note(subprocess.Popen(['sleep', '601'], start_new_session=True).pid)\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        note(os.getpid()); time.sleep(602)\n"
        "    os._exit(0)\n"
        "os.wait()\n"
    )
    path = write(hostile.dags, "strays.py", simple_dag("leaves_children") + "import os, time\n" + body)
    parsed = _parse(driver, conn, hostile, path)
    assert parsed.exit_code == 0 and _dag_ids(parsed) == ["leaves_children"], parsed.log_text[-2000:]
    strays = [int(line) for line in pids.read_text().split()]
    assert len(strays) == 3
    wait_for(lambda: not any(pid_alive(pid) for pid in strays), 20, f"the strays {strays} to be killed")
    hostile.assert_recovered(base, conn.ledger)


def test_a_hundred_megabytes_of_stdout_is_cut_at_the_output_limit(
    hostile: Hostile, conn: Any, driver: ParseDriver
) -> None:
    base = hostile.baseline()
    body = "for _ in range(100):\n    sys.stdout.write('x' * (2**20 - 1) + '\\n')\nsys.stdout.flush()\n"
    path = write(hostile.dags, "shouts.py", simple_dag("shouts") + "import sys\n" + body)
    parsed = _parse(driver, conn, hostile, path)
    entry = _one_entry(conn)
    assert parsed.exit_code == 0 and _dag_ids(parsed) == ["shouts"]
    assert entry.stats["output_dropped"] >= 100 * 2**20 - MAX_OUTPUT
    assert parsed.log_text.count(f"output limit of {MAX_OUTPUT} bytes reached") == 1
    assert parsed.log_text.count("x" * 1000) <= MAX_OUTPUT // 1000
    hostile.assert_recovered(base, conn.ledger)


def test_a_thread_that_never_ends_does_not_hold_the_worker(hostile: Hostile, conn: Any, driver: ParseDriver) -> None:
    base = hostile.baseline()
    body = "import threading\nthreading.Thread(target=time.sleep, args=(10**6,)).start()\n"
    path = write(hostile.dags, "threads.py", simple_dag("threaded") + "import time\n" + body)
    parsed = _parse(driver, conn, hostile, path)
    assert parsed.exit_code == 0 and _dag_ids(parsed) == ["threaded"]
    assert _one_entry(conn).stats["wall_s"] < WORKER_TIMEOUT_S
    hostile.assert_recovered(base, conn.ledger)


def test_dag_code_signalling_the_zygote(hostile: Hostile, conn: Any, driver: ParseDriver) -> None:
    """SIGTERM/SIGHUP/SIGINT to the gateway are ignored; a SIGKILLed forker is replaced."""
    base_generation = hostile.zygote.status()["forker"]["generation"]
    body = (
        "forker = os.getppid()\n"
        "gateway = int(open(f'/proc/{forker}/stat').read().rpartition(')')[2].split()[1])\n"
        "for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):\n"
        "    os.kill(gateway, s)\n"
        "os.kill(forker, signal.SIGKILL)\n"
        "time.sleep(60)\n"
    )
    parsed = _parse(driver, conn, hostile, write(hostile.dags, "regicide.py", MARKER + body))
    entry = _one_entry(conn)
    assert entry.outcome == "forker_lost", (entry, parsed.log_text[-2000:])
    ignored = hostile.zygote.events("gateway.signal_ignored")
    assert {event["signum"] for event in ignored} >= {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}
    hostile.zygote.wait_healthy(60)
    status = hostile.zygote.status()
    assert status["forker"]["generation"] == base_generation + 1  # a restart, not a reload
    assert not status["gateway"]["draining"]
    hostile.assert_recovered(hostile.baseline(), conn.ledger)


def test_nan_timeout_still_gets_the_zygote_deadline(hostile: Hostile) -> None:
    base = hostile.baseline()
    client = HostileClient(hostile.endpoint, "nan")
    client.hello()
    ledger = RawLedger(client)
    client.send(spawn_message("nan-1", hostile.canary_path, timeout=float("nan")))
    ledger.sent.add("nan-1")
    ledger.pump_until(lambda: "nan-1" in ledger.started, 30, "the worker to start")
    ledger.wait_terminal(timeout=WORKER_TIMEOUT_S + 10)
    assert ledger.exits["nan-1"].outcome == "deadline"
    ledger.assert_balanced()
    client.close()
    hostile.assert_recovered(base)


def test_dag_code_cannot_make_the_forker_drain(hostile: Hostile, conn: Any, driver: ParseDriver) -> None:
    forker = hostile.forker_pid()
    body = "os.kill(os.getppid(), signal.SIGTERM)\n"
    parsed = _parse(driver, conn, hostile, write(hostile.dags, "drains.py", MARKER + body))
    assert parsed.exit_code == 0
    try:
        hostile.canary()  # refused with fork_refused while the forker drains
        assert hostile.forker_pids() == [forker]
    finally:
        hostile.forker_pid(60)  # a drained forker is replaced: later tests get a serving zygote
