"""The zygote in its own PID namespace, as in a container, with its client outside it.

`airflow zygote serve` runs under `unshare --pid --fork --mount-proc` (PID 1 of a fresh namespace,
like a container's main process). From outside, `airflow zygote status --json` must work over the
socket alone and report the zygote's own view of its pids (namespace pids, not ours): the client
never needs to see or signal the zygote's processes. SIGTERM to the namespace's init must end the
whole tree with exit code 0 within the drain bound.

Needs root (or unprivileged user namespaces) for unshare; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

pytestmark = pytest.mark.e2e

AIRFLOW = Path(sys.executable).parent / "airflow"
READY_DEADLINE_S = 150.0
POLL_INTERVAL_S = 0.5
DRAIN_TIMEOUT_S = 10.0
# Drain has nothing in flight here; the margin covers interpreter shutdown on a loaded machine.
STOP_DEADLINE_S = DRAIN_TIMEOUT_S + 20.0
SUN_PATH_MAX = 107


def _unshare() -> str:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare(1) (util-linux) is not installed")
    try:
        probe = subprocess.run(
            [unshare, "--pid", "--fork", "--mount-proc", "true"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot run unshare: {exc}")
    if probe.returncode != 0:
        pytest.skip(f"creating a PID namespace is not permitted here: {probe.stderr.strip()}")
    return unshare


def _proc_status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _namespace_pid(pid: int) -> int:
    """The pid of a process as seen from its own (innermost) PID namespace."""
    return int(_proc_status(pid)["NSpid"].split()[-1])


def _blocks_or_ignores(pid: int, signum: int) -> bool:
    status = _proc_status(pid)
    mask = 1 << (signum - 1)
    return bool((int(status["SigBlk"], 16) | int(status["SigIgn"], 16)) & mask)


def _tree(root: psutil.Process) -> list[psutil.Process]:
    return [root, *root.children(recursive=True)]


def _alive(processes: dict[int, float]) -> list[int]:
    """Pids among ``{pid: create_time}`` still running as the same process (not a reused pid)."""
    left = []
    for pid, created in processes.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE:
                left.append(pid)
        except psutil.NoSuchProcess:
            continue
    return left


def _status_json(stdout: str) -> dict[str, Any]:
    """The JSON object `status --json` printed (tolerating log lines before it)."""
    start = stdout.find("{")
    assert start >= 0, f"no JSON in status output: {stdout!r}"
    document: dict[str, Any] = json.loads(stdout[start:])
    return document


def _reported_pids(status: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, int]]:
    """(role, pid) for each gateway/forker pid in a status document, however it is nested."""
    if isinstance(status, dict):
        for key, value in status.items():
            lowered = str(key).lower()
            if isinstance(value, int) and not isinstance(value, bool):
                scope = " ".join((*path, lowered))
                if lowered in ("gateway_pid", "forker_pid") or (
                    lowered == "pid" and ("gateway" in scope or "forker" in scope)
                ):
                    yield ("forker" if "forker" in scope else "gateway"), value
            else:
                yield from _reported_pids(value, (*path, lowered))
    elif isinstance(status, list):
        for item in status:
            yield from _reported_pids(item, path)


def _run_status(env: dict[str, str], prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(prefix or []), str(AIRFLOW), "zygote", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _environment(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    dags = tmp_path / "dags"
    home.mkdir()
    dags.mkdir()
    # An existing airflow.cfg keeps Airflow from writing one (concurrently, from several processes).
    (home / "airflow.cfg").write_text(f"[core]\ndags_folder = {dags}\nload_examples = False\n")
    socket_path = tmp_path / "sock" / "zygote.sock"
    assert len(str(socket_path)) < SUN_PATH_MAX, "socket path too long for AF_UNIX"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW__", "AIRFLOW_CONFIG", "AIRFLOW_HOME", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__ZYGOTE__SOCKET": f"ipc://{socket_path}",
            "AIRFLOW__ZYGOTE__DRAIN_TIMEOUT": str(DRAIN_TIMEOUT_S),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


class NamespacedZygote:
    """`airflow zygote serve` as PID 1 of its own PID namespace, with every process it ever had."""

    def __init__(self, unshare: str, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.seen: dict[int, float] = {}
        with log_path.open("w") as log:
            self.server = subprocess.Popen(
                # --kill-child: should this test die, the namespace's init gets SIGKILL with unshare.
                [unshare, "--pid", "--fork", "--mount-proc", "--kill-child", "--", str(AIRFLOW), "zygote", "serve"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.root = psutil.Process(self.server.pid)

    def diagnostics(self) -> str:
        return f"\n--- airflow zygote serve output ---\n{self.log_path.read_text()[-6000:]}"

    def remember_tree(self) -> list[psutil.Process]:
        tree = _tree(self.root)
        for process in tree:
            try:
                self.seen.setdefault(process.pid, process.create_time())
            except psutil.NoSuchProcess:
                continue
        return tree

    def host_to_namespace_pids(self) -> dict[int, int]:
        mapping: dict[int, int] = {}
        for process in self.remember_tree():
            try:
                mapping[process.pid] = _namespace_pid(process.pid)
            except (FileNotFoundError, ProcessLookupError):
                continue  # a short-lived child (a probe, a worker) ended meanwhile
        return mapping

    def wait_ready(self) -> None:
        """Poll `status --json` from outside the namespace until it exits 0, within the deadline."""
        deadline = time.monotonic() + READY_DEADLINE_S
        while True:
            assert self.server.poll() is None, f"serve exited early with {self.server.returncode}" + self.diagnostics()
            self.remember_tree()
            last = _run_status(self.env)
            if last.returncode == 0:
                return
            assert time.monotonic() < deadline, (
                f"not ready within {READY_DEADLINE_S:.0f}s; last status exit {last.returncode}: "
                f"{last.stdout[-2000:]}{last.stderr[-2000:]}" + self.diagnostics()
            )
            time.sleep(POLL_INTERVAL_S)

    def terminate(self, init_host_pid: int) -> int:
        """SIGTERM as a container runtime sends it; the exit code of unshare (its child's)."""
        self.remember_tree()
        # util-linux unshare blocks SIGTERM in its parent and never forwards it; when it does, the
        # signal goes to the namespace's init, which is what a container runtime signals (PID 1).
        unshare_holds_sigterm = _blocks_or_ignores(self.server.pid, signal.SIGTERM)
        self.server.send_signal(signal.SIGTERM)
        if unshare_holds_sigterm:
            os.kill(init_host_pid, signal.SIGTERM)
        try:
            return self.server.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_DEADLINE_S:.0f}s after SIGTERM" + self.diagnostics())

    def leftovers(self, grace_s: float = 5.0) -> list[int]:
        deadline = time.monotonic() + grace_s
        while _alive(self.seen) and time.monotonic() < deadline:
            time.sleep(0.1)
        return _alive(self.seen)

    def kill(self) -> None:
        if self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait(timeout=10)
        for pid in _alive(self.seen):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue


@pytest.mark.timeout(READY_DEADLINE_S + STOP_DEADLINE_S + 120)
def test_zygote_in_its_own_pid_namespace(tmp_path: Path) -> None:
    unshare = _unshare()
    assert AIRFLOW.exists(), f"no airflow CLI next to {sys.executable}"
    env = _environment(tmp_path)
    zygote = NamespacedZygote(unshare, env, tmp_path / "serve.log")
    try:
        zygote.wait_ready()
        host_to_ns = zygote.host_to_namespace_pids()
        (init_host_pid,) = (pid for pid, ns_pid in host_to_ns.items() if ns_pid == 1)
        assert init_host_pid != zygote.server.pid, "unshare itself stays in our namespace"

        # From outside: the status names the zygote's pids as it sees them, i.e. namespace pids.
        outside = _run_status(env)
        assert outside.returncode == 0, outside.stdout + outside.stderr
        reported = list(_reported_pids(_status_json(outside.stdout)))
        assert any(role == "gateway" for role, _ in reported), f"no gateway pid in {outside.stdout}"
        ns_to_host = {ns_pid: pid for pid, ns_pid in host_to_ns.items()}
        for role, pid in reported:
            assert pid in ns_to_host, f"{role} pid {pid} is not a pid of the zygote's namespace {host_to_ns}"
            assert ns_to_host[pid] != pid, f"{role} pid {pid} is our pid, not the namespace's"
        assert not {pid for _, pid in reported} & set(host_to_ns), "a reported pid is one of ours"

        # A client that cannot see the zygote's processes at all (a sibling PID namespace) works too.
        sibling = _run_status(env, [unshare, "--pid", "--fork", "--mount-proc", "--"])
        assert sibling.returncode == 0, sibling.stdout + sibling.stderr

        code = zygote.terminate(init_host_pid)
        assert code == 0, f"exit code {code} after SIGTERM" + zygote.diagnostics()
        left = zygote.leftovers()
        assert not left, f"left running after SIGTERM: {left}"
    finally:
        zygote.kill()
