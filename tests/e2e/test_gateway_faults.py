"""The gateway under production faults, with a real zygote, real workers and real signals.

One zygote per module serves the scenarios on a git-sync style tree (``repo -> .worktrees/<sha>``,
swapped by renaming a new symlink over the old one), with two workers and a queue of one, so
admission answers (``overloaded``) are reached with a handful of requests. The start-up test runs
its own zygote (it must watch readiness change and read the gateway's environment).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from dagfiles import simple_dag
from hostile_support import HostileClient, run_raw_parse
from zygote_harness import AIRFLOW, ZygoteProcess, socket_endpoint, spawn_message, wait_for

from protocol import Error, Exited, Heartbeat, Message, Signal, Started, Welcome

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
SECRET = "gateway-test-secret-value-0123456789"


def _swap(tree: Path, sha: str) -> None:
    new = tree / "repo.new"
    new.symlink_to(tree / ".worktrees" / sha)
    os.replace(new, tree / "repo")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("gitsync")
    for sha in ("aaa", "bbb"):
        dags = tree / ".worktrees" / sha / "dags"
        dags.mkdir(parents=True)
        (dags / "swapped.py").write_text(simple_dag("gitsync_swapped"))
        (dags / "sleeper.py").write_text("# airflow DAG\nimport time\ntime.sleep(120)\n")
        big = 4 * 1024 * 1024 + 100 * 1024  # a result just over the credit window
        (dags / "big.py").write_text(simple_dag("gitsync_big") + f"dag.doc_md = 'x' * {big}\n")
    (tree / "repo").symlink_to(tree / ".worktrees" / "aaa")
    (tree / "outside.py").write_text(simple_dag("outside"))
    (tree / ".worktrees" / "aaa" / "dags" / "escape.py").symlink_to(tree / "outside.py")
    (tree / ".worktrees" / "bbb" / "dags" / "escape.py").symlink_to(tree / "outside.py")
    return tree


@pytest.fixture(scope="module")
def zygote(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZygoteProcess]:
    env = {
        **os.environ,
        "AIRFLOW__ZYGOTE__SOCKET": socket_endpoint(),
        "AIRFLOW__ZYGOTE__ALLOWED_ROOTS": str(tree / "repo" / "dags"),
        "AIRFLOW__ZYGOTE__MAX_WORKERS": "2",
        "AIRFLOW__ZYGOTE__MAX_QUEUED": "1",
        "AIRFLOW__ZYGOTE__HEARTBEAT_TIMEOUT": "2",
    }
    process = ZygoteProcess.start(env, tmp_path_factory.mktemp("gateway") / "zygote.log")
    yield process
    process.stop()


@pytest.fixture
def client(zygote: ZygoteProcess) -> Iterator[HostileClient]:
    client = HostileClient(zygote.settings.socket, "gateway")
    client.hello()
    yield client
    client.close()


def test_gitsync_swaps_during_parses_never_refuse_one(zygote: ZygoteProcess, tree: Path) -> None:
    stop = threading.Event()
    swaps = [0]

    def swapper() -> None:
        while not stop.wait(0.02):
            _swap(tree, ("bbb", "aaa")[swaps[0] % 2])
            swaps[0] += 1

    thread = threading.Thread(target=swapper)
    thread.start()
    try:
        parses = []
        while len(parses) < 3 or (swaps[0] <= 20 and len(parses) < 50):  # parses overlap swaps, fast or slow
            i = len(parses)
            client = HostileClient(zygote.settings.socket, f"swap-{i}")
            client.hello()
            parses.append(run_raw_parse(client, f"swap-{i}", tree / "repo" / "dags" / "swapped.py", timeout=90))
            client.close()
    finally:
        stop.set()
        thread.join()
    assert swaps[0] > 20, "the symlink was swapped while the parses ran"
    for parse in parses:
        assert isinstance(parse.terminal, Exited) and parse.terminal.exit_code == 0, parse.describe()
        assert b"gitsync_swapped" in parse.outputs.get("requests", b""), parse.describe()
    assert not zygote.events("request.input_refused")


def test_a_path_escaping_through_a_symlink_is_still_refused(client: HostileClient, tree: Path) -> None:
    client.send(spawn_message("escape-1", tree / "repo" / "dags" / "escape.py"))
    error = client.expect(Error, request_id="escape-1")
    assert error.code == "rejected_path" and "outside the allowed roots" in error.message


def test_beyond_the_workers_and_the_short_queue_the_answer_is_overloaded_at_once(
    client: HostileClient, tree: Path
) -> None:
    sleeper = tree / "repo" / "dags" / "sleeper.py"
    for i in range(3):
        client.send(spawn_message(f"busy-{i}", sleeper))
    started = [client.expect(Started, timeout=60) for _ in range(2)]  # path checks may finish in any order
    assert {s.id for s in started} <= {"busy-0", "busy-1", "busy-2"}
    sent = time.monotonic()
    client.send(spawn_message("busy-3", sleeper))
    error = client.expect(Error, request_id="busy-3", timeout=10)
    assert error.code == "overloaded" and time.monotonic() - sent < 5
    load = _next_load(client)
    assert (load["ready"], load["free"], load["running"], load["queued"]) == (True, 0, 2, 1)
    for i in range(3):
        client.send(Signal(id=f"busy-{i}", signum=signal.SIGKILL))
    terminals = {client.expect(Exited, timeout=60).id for _ in range(3)}
    assert terminals == {"busy-0", "busy-1", "busy-2"}
    for worker in started:
        wait_for(lambda pid=worker.pid: not psutil.pid_exists(pid), 30, "the killed worker to be gone")


_STOPPED_CLIENT = """
import json, sys
from pathlib import Path
from hostile_support import HostileClient, run_raw_parse
from protocol import Input

endpoint, path, marker = sys.argv[1:4]

class Client(HostileClient):
    def send(self, message):
        super().send(message)
        if isinstance(message, Input) and not Path(marker).exists():
            Path(marker).write_text("input sent")

client = Client(endpoint, "stopped")
client.hello()
parse = run_raw_parse(client, "big-1", Path(path), timeout=200, spawn_timeout=200)

def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)

longest = max((len(s) for body in parse.results for s in strings(body)), default=0)
print(json.dumps({"terminal": type(parse.terminal).__name__, "exit_code": getattr(parse.terminal, "exit_code", None),
                  "results": len(parse.results), "longest": longest}))
"""


def test_a_stopped_client_keeps_its_worker_and_gets_the_whole_result(
    zygote: ZygoteProcess, tree: Path, tmp_path: Path
) -> None:
    """SIGSTOP past heartbeat_timeout (2 s) and past the 10 s channel drain, with 100 KB of the
    result still in the worker's socket after the worker exited: nothing is lost."""
    marker = tmp_path / "input-sent"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"), str(REPO / "tests" / "e2e")])}
    args = [
        sys.executable,
        "-c",
        _STOPPED_CLIENT,
        zygote.settings.socket,
        str(tree / "repo" / "dags" / "big.py"),
        str(marker),
    ]
    client = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(marker.exists, 90, "the stopped client to send its parse request")
        client.send_signal(signal.SIGSTOP)
        wait_for(lambda: _silent(zygote, "stopped"), 30, "the gateway to notice the silent client")
        time.sleep(20)  # the scenario: stopped past the drain time after the worker ended
        assert not zygote.events("request.channels_forced_closed")
        client.send_signal(signal.SIGCONT)
        out, err = client.communicate(timeout=120)
    finally:
        client.kill()
    summary = json.loads(out.decode().splitlines()[-1]) if out else {}
    assert summary == {"terminal": "Exited", "exit_code": 0, "results": 1, "longest": 4 * 1024 * 1024 + 100 * 1024}, err
    gone = [e for e in zygote.events("client.gone") if str(e.get("client", "")).startswith("stopped")]
    assert [e["requests"] for e in gone] == [0], "its session ended only when it closed, after its parse"


def _gated(dags: Path, name: str, ending: str) -> Path:
    """A DAG file that says it runs (``<name>.running``), then waits for ``<name>.gate`` and does ``ending``."""
    path = dags / f"{name}.py"
    running, gate = dags.parent / f"{name}.running", dags.parent / f"{name}.gate"
    body = f"import os, time\nopen({str(running)!r}, 'w').close()\n"
    body += f"while not os.path.exists({str(gate)!r}):\n    time.sleep(0.05)\n{ending}\n"
    path.write_text(simple_dag(f"gated_{name}") + body)
    return path


def test_workers_that_finish_while_the_forker_is_stopped_are_answered_and_free_their_slots(
    zygote: ZygoteProcess, tree: Path
) -> None:
    """The forker SIGSTOPped while both workers run: each is answered from its exit status, once.

    Without it, both parse slots of the dag-processor stay taken for as long as the forker is
    stopped, and it parses nothing (a stall the faults suite once caught). New spawns are
    ``not_ready`` at once meanwhile; after SIGCONT the forker's own late ``exited`` adds nothing.
    """
    dags = tree / "repo" / "dags"
    files = {"clean": _gated(dags, "clean", "pass"), "exit3": _gated(dags, "exit3", "os._exit(3)")}
    parses: dict[str, Any] = {}
    late: dict[str, list[Message]] = {}

    def parse(name: str) -> None:
        client = HostileClient(zygote.settings.socket, f"frozen-{name}")
        client.hello()
        try:
            parses[name] = run_raw_parse(client, f"frozen-{name}", files[name], timeout=90)
            late[name] = _messages_for(client, f"frozen-{name}", 6.0)  # the forker resumes meanwhile
        finally:
            client.close()

    threads = [threading.Thread(target=parse, args=(name,)) for name in files]
    for thread in threads:
        thread.start()
    forker = zygote.status()["forker"]["pid"]
    try:
        for name in files:
            wait_for((tree / "repo" / f"{name}.running").exists, 90, f"the {name} worker to run")
        os.kill(forker, signal.SIGSTOP)
        for name in files:
            (tree / "repo" / f"{name}.gate").touch()
        wait_for(lambda: set(parses) == set(files), 30, "both parses to be answered while the forker is stopped")
        _assert_not_ready_at_once(zygote, dags / "swapped.py")
        assert psutil.Process(forker).status() == psutil.STATUS_STOPPED
    finally:
        os.kill(forker, signal.SIGCONT)
        for thread in threads:
            thread.join(timeout=120)
    clean, failed = parses["clean"], parses["exit3"]
    assert isinstance(clean.terminal, Exited) and clean.terminal.exit_code == 0, clean.describe()
    assert b"gated_clean" in clean.outputs.get("requests", b""), clean.describe()
    assert isinstance(failed.terminal, Exited), failed.describe()
    assert (failed.terminal.exit_code, failed.terminal.outcome) == (3, "failed"), failed.describe()
    answered = {e["request_id"] for e in zygote.events("request.answered_without_forker")}
    assert {"frozen-clean", "frozen-exit3"} <= answered
    assert late == {name: [] for name in files}, "the forker's own exited went no further than the gateway"
    wait_for(lambda: zygote.status()["workers"]["running"] == 0, 30, "the forker's late answers to free the slots")
    client = HostileClient(zygote.settings.socket, "frozen-after")
    client.hello()
    try:
        after = run_raw_parse(client, "frozen-after", dags / "swapped.py", timeout=90)
    finally:
        client.close()
    assert isinstance(after.terminal, Exited) and after.terminal.exit_code == 0, after.describe()


def _assert_not_ready_at_once(zygote: ZygoteProcess, path: Path) -> None:
    client = HostileClient(zygote.settings.socket, "frozen-other")
    client.hello()
    try:
        sent = time.monotonic()
        client.send(spawn_message("frozen-other", path))
        assert client.expect(Error, request_id="frozen-other", timeout=10).code == "not_ready"
        assert time.monotonic() - sent < 5
    finally:
        client.close()


def test_a_zygote_refusing_nearly_every_spawn_is_not_healthy(zygote: ZygoteProcess, tree: Path) -> None:
    client = HostileClient(zygote.settings.socket, "refused")
    client.hello()
    try:
        for i in range(150):  # far more than this module's earlier parses: "nearly every" recent spawn
            client.send(spawn_message(f"out-{i}", tree / "outside.py"))
            assert client.expect(Error, request_id=f"out-{i}").code == "rejected_path"
    finally:
        client.close()
    report = zygote.status()
    assert report["healthy"] is False
    assert "refused" in report["reason"] and report["recent"]["refused"]["rejected_path"] >= 150
    done = subprocess.run([AIRFLOW, "zygote", "status"], env=zygote.env, capture_output=True, timeout=60, check=False)
    assert done.returncode == 1


def _messages_for(client: HostileClient, request_id: str, seconds: float) -> list[Message]:
    """Every message for ``request_id`` that arrives within ``seconds``."""
    deadline, seen = time.monotonic() + seconds, []
    while (remaining := deadline - time.monotonic()) > 0:
        message = client.poll_message(remaining)
        if message is not None and getattr(message, "id", None) == request_id:
            seen.append(message)
    return seen


def _silent(zygote: ZygoteProcess, prefix: str) -> list[dict[str, Any]]:
    return [e for e in zygote.events("client.silent") if str(e.get("client", "")).startswith(prefix)]


def _next_load(client: HostileClient, timeout: float = 10.0) -> dict[str, Any]:
    heartbeat = client.expect(Heartbeat, timeout=timeout)
    return dict(heartbeat.load)


def test_startup_is_not_ready_at_once_then_ready_with_secrets_withheld_and_cwd_ignored(tmp_path: Path) -> None:
    """Started from a folder holding a fake ``zygote``/``protocol``: the installed code runs (-P -s);
    the gateway's environment has no CURVE secret; before the forker is ready a spawn is answered
    ``not_ready`` at once, and readiness arrives as a heartbeat the moment it changes."""
    for package in ("zygote", "protocol"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("raise SystemExit('the fake package from the cwd ran')\n")
    env = {
        **os.environ,
        "AIRFLOW__ZYGOTE__SOCKET": socket_endpoint(),
        "AIRFLOW__ZYGOTE__CURVE_SERVER_SECRET_KEY": SECRET,
    }
    log_path = tmp_path / "zygote.log"
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            [AIRFLOW, "zygote", "serve"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    zygote = ZygoteProcess(popen, env, log_path)
    try:
        client = HostileClient(env["AIRFLOW__ZYGOTE__SOCKET"], "startup")
        welcome: Welcome = client.hello()
        assert welcome.load["ready"] is False, "the forker cannot have imported Airflow yet"
        client.send(spawn_message("early-1", Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / "none.py"))
        assert client.expect(Error, request_id="early-1", timeout=10).code == "not_ready"
        wait_for(lambda: _next_load(client, 120)["ready"], 150, "a heartbeat saying ready")
        client.close()
        report = zygote.wait_healthy()
        gateway_env = Path(f"/proc/{popen.pid}/environ").read_bytes()
        forker_env = Path(f"/proc/{report['forker']['pid']}/environ").read_bytes()
        assert SECRET.encode() not in gateway_env and SECRET.encode() not in forker_env
        assert b"AIRFLOW__ZYGOTE__SOCKET" in gateway_env, "the rest of the environment is kept"
        for pid in (popen.pid, report["forker"]["pid"]):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert b"-P" in cmdline and b"-s" in cmdline
            assert Path(f"/proc/{pid}/cwd").resolve() == tmp_path.resolve()
        assert "fake package" not in zygote.log_text()
    finally:
        zygote.stop()
