"""``make run``: a zygote plus a zygote-backed dag-processor on SQLite and Airflow's example DAGs.

Sets up an Airflow home under ``.run/`` (``airflow db migrate`` the first time), starts
``airflow zygote serve`` and ``airflow zygote dag-processor``, prints what the first pass found
and the zygote's status, then keeps both running until Ctrl-C, which stops them cleanly.
Airflow's ``[metrics]`` StatsD output goes to a small UDP listener here, so the first report also
shows the ``dag_processing.zygote.*`` metrics the dag-processor sent (README, "Metrics").
``--once`` parses every file once and exits (used by the smoke test).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from zygote.launcher import ZygoteLaunchError, ZygoteProcess, airflow_command

RUN_DIR = Path(".run")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    home = Path(args.home).resolve()
    tap = MetricsTap()
    env = _environment(home, tap.port)
    _migrate(env, home)
    print(f"Starting airflow zygote serve (log: {home / 'zygote.log'})")
    zygote = ZygoteProcess.start(env, home / "zygote.log", wait=False)
    processor: subprocess.Popen[bytes] | None = None
    try:
        status = _wait_healthy(zygote)
        print(
            f"zygote ready: forker pid {status['forker']['pid']}, {status['forker']['frozen_objects']} frozen objects"
        )
        runs = ["-n", "1"] if args.once else []
        processor = _spawn(["zygote", "dag-processor", *runs], env, home / "dag-processor.log")
        _wait_first_pass(processor, home, once=args.once)
        _report(env, home)
        tap.report()
        if not args.once:
            print("\nRunning; Ctrl-C stops both.")
            processor.wait()
    except KeyboardInterrupt:
        print("\nStopping...")
    finally:
        codes = [_stop(processor)] if processor is not None else []
        codes.append(zygote.stop(90))
    return 0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m zygote.demo", description=__doc__)
    parser.add_argument("--home", default=str(RUN_DIR / "airflow-home"), help="Airflow home to create and use")
    parser.add_argument("--once", action="store_true", help="parse every file once, report, and exit")
    return parser.parse_args(argv)


class MetricsTap:
    """A UDP StatsD listener on 127.0.0.1 that keeps the last line of each zygote metric it received."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.received: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._receive, name="metrics-tap", daemon=True).start()

    def _receive(self) -> None:
        while True:
            for line in self.sock.recv(65536).decode(errors="replace").splitlines():
                name = line.partition(":")[0]
                if ".dag_processing.zygote." in name:
                    with self._lock:
                        count = self.received.get(name, (0, ""))[0]
                        self.received[name] = (count + 1, line)

    def report(self) -> None:
        with self._lock:
            received = dict(self.received)
        print(f"\nMetrics received on udp://127.0.0.1:{self.port} (dag_processing.zygote.*: count, last line):")
        if not received:
            print("  none: is the statsd package installed (pip install 'apache-airflow[statsd]')?")
        for _, (count, line) in sorted(received.items()):
            print(f"  {count:>5}  {line}")


def _environment(home: Path, statsd_port: int) -> dict[str, str]:
    import airflow.example_dags

    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(Path(airflow.example_dags.__file__).parent),
            "AIRFLOW__ZYGOTE__SOCKET": f"ipc://{home / 'zygote' / 'zygote.sock'}",
            "AIRFLOW__ZYGOTE__PRELOAD_STATE_FILE": str(home / "zygote" / "preload.json"),
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(statsd_port),
        }
    )
    return env


def _migrate(env: dict[str, str], home: Path) -> None:
    if (home / "airflow.db").exists():
        return
    print(f"Creating the metadata DB: airflow db migrate ({home / 'airflow.db'})")
    subprocess.run(airflow_command("db", "migrate"), env=env, check=True, stdout=subprocess.DEVNULL)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    print(f"Starting airflow {' '.join(args)} (log: {log})")
    with log.open("ab") as out:
        return subprocess.Popen(
            airflow_command(*args), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_healthy(zygote: ZygoteProcess) -> dict[str, Any]:
    try:
        return zygote.wait_healthy(timeout=120)
    except ZygoteLaunchError as exc:
        raise SystemExit(str(exc)) from None


def _wait_first_pass(processor: subprocess.Popen[bytes], home: Path, once: bool) -> None:
    """Until the dag-processor ran once (``--once``) or the DAG count stopped changing."""
    if once:
        processor.wait(600)
        return
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 5 and processor.poll() is None:
        count = _count(home, "select count(*) from serialized_dag")
        if count != last:
            last, stable_since = count, time.monotonic()
        time.sleep(0.5)


def _count(home: Path, query: str) -> int:
    try:
        with sqlite3.connect(home / "airflow.db") as db:
            return int(db.execute(query).fetchone()[0])
    except sqlite3.Error:
        return 0


def _report(env: dict[str, str], home: Path) -> None:
    with sqlite3.connect(home / "airflow.db") as db:
        dags = [row[0] for row in db.execute("select dag_id from dag where not is_stale order by dag_id")]
        errors = db.execute("select filename, stacktrace from import_error order by filename").fetchall()
    print(f"\nDAGs found: {len(dags)}")
    print("  " + ", ".join(dags[:12]) + (" ..." if len(dags) > 12 else ""))
    print(f"Import errors: {len(errors)}")
    for filename, stacktrace in errors:
        print(f"  {filename}: {stacktrace.strip().splitlines()[-1]}")
    print("\nZygote status (airflow zygote status):")
    subprocess.run(airflow_command("zygote", "status"), env=env, check=False)


def _stop(proc: subprocess.Popen[bytes]) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
