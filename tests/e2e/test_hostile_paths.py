"""The zygote parses only files under its roots, symlinks resolved, and says which path it refused.

The roots here are the defaults (``[core] dags_folder`` and ``dag_bundle_storage_path``); the files
outside them live in pytest's ``tmp_path``. Every refusal is a terminal ``rejected_path`` error that
names the path; no worker is forked for it, and a worker whose first frame asks for another file than
its spawn named is killed before it reads that frame.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagfiles import simple_dag, write
from hostile_support import Hostile, HostileClient, RawLedger, hostile_zygote, parse_request_frame, run_raw_parse
from zygote_harness import ParseDriver, pid_alive, spawn_message, wait_for

from protocol import Error, Input, Signal, Spawn
from zygote.gateway.relay import MAX_PENDING_INPUT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    with hostile_zygote(tmp_path_factory.mktemp("paths"), "paths") as zygote:
        yield zygote


@pytest.fixture
def client(hostile: Hostile) -> Iterator[HostileClient]:
    session = HostileClient(hostile.endpoint, "paths")
    session.hello()
    yield session
    session.close()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A DAG file outside every root; importing it would leave a trace."""
    trace = tmp_path / "outside-was-parsed"
    return write(tmp_path, "outside.py", simple_dag("outside") + f"open({str(trace)!r}, 'w').close()\n")


def _refusal(client: HostileClient, path: str, request_id: str = "p-1") -> Error:
    """Spawn ``path`` (exactly this string); the one terminal reply must be ``rejected_path``."""
    ledger = RawLedger(client)
    client.send(
        Spawn(id=request_id, path=path, bundle_path=os.path.dirname(path) or "/", bundle_name="b", timeout=60, cwd="/")
    )
    ledger.sent.add(request_id)
    ledger.assert_balanced()
    [error] = [e for e in ledger.errors if e.id == request_id]
    assert error.code == "rejected_path", error
    assert not ledger.started, "a worker was forked for a refused path"
    return error


def test_file_outside_the_roots(hostile: Hostile, client: HostileClient, outside: Path) -> None:
    base = hostile.baseline()
    error = _refusal(client, str(outside))
    assert str(outside) in error.message and "outside the allowed roots" in error.message
    assert str(hostile.dags.parent) in error.message  # names the roots it checked against
    hostile.assert_recovered(base)


def test_dot_dot_traversal(hostile: Hostile, client: HostileClient, outside: Path) -> None:
    base = hostile.baseline()
    climbing = f"{hostile.dags}/{'../' * len(hostile.dags.parts)}{str(outside).lstrip('/')}"
    error = _refusal(client, climbing)
    assert climbing in error.message and repr(str(outside)) in error.message
    hostile.assert_recovered(base)


def test_symlink_escaping_a_root(hostile: Hostile, client: HostileClient, outside: Path) -> None:
    base = hostile.baseline()
    link = hostile.dags / "escape.py"
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    error = _refusal(client, str(link))
    assert str(link) in error.message and str(outside) in error.message
    hostile.assert_recovered(base)


def test_symlinked_directory_escaping_a_root(hostile: Hostile, client: HostileClient, outside: Path) -> None:
    base = hostile.baseline()
    link = hostile.dags / "elsewhere"
    link.unlink(missing_ok=True)
    link.symlink_to(outside.parent, target_is_directory=True)
    _refusal(client, str(link / outside.name))
    hostile.assert_recovered(base)


@pytest.mark.parametrize(
    "kind", ["missing", "directory", "relative", "nul_byte", "symlink_loop", "empty", "dangling_symlink"]
)
def test_paths_that_are_not_files_under_a_root(hostile: Hostile, client: HostileClient, kind: str) -> None:
    base = hostile.baseline()
    loop = hostile.dags / "loop.py"
    dangling = hostile.dags / "dangling.py"
    for link, target in ((loop, loop), (dangling, hostile.dags / "nowhere.py")):
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    path = {
        "missing": str(hostile.dags / "missing.py"),
        "directory": str(hostile.dags),
        "relative": "dags/canary.py",
        "nul_byte": f"{hostile.canary_path}\0.py",
        "symlink_loop": str(loop),
        "empty": "",
        "dangling_symlink": str(dangling),
    }[kind]
    error = _refusal(client, path)
    assert repr(path) in error.message
    hostile.assert_recovered(base)


def test_symlinks_and_dot_dot_that_stay_inside_are_parsed(hostile: Hostile, client: HostileClient) -> None:
    base = hostile.baseline()
    link = hostile.dags / "alias.py"
    link.unlink(missing_ok=True)
    link.symlink_to(hostile.canary_path)
    (hostile.dags / "sub").mkdir(exist_ok=True)
    for n, path in enumerate([link, hostile.dags / "sub" / ".." / "canary.py"]):
        parse = run_raw_parse(client, f"inside-{n}", path)
        assert parse.terminal is not None and getattr(parse.terminal, "exit_code", None) == 0, parse.describe()
        assert hostile.canary_dag_id.encode() in parse.outputs["requests"]
    hostile.assert_recovered(base)


def test_zip_bundle_is_parsed(hostile: Hostile, client: HostileClient) -> None:
    base = hostile.baseline()
    archive = hostile.dags / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("zipped_dag.py", simple_dag("zipped_in_a_bundle"))
    parse = run_raw_parse(client, "zip-1", archive)
    assert getattr(parse.terminal, "exit_code", None) == 0, parse.describe()
    assert b"zipped_in_a_bundle" in parse.outputs["requests"]
    hostile.assert_recovered(base)


def test_zip_member_path_is_judged_by_its_archive(hostile: Hostile, client: HostileClient, tmp_path: Path) -> None:
    base = hostile.baseline()
    outside_zip = tmp_path / "outside.zip"
    with zipfile.ZipFile(outside_zip, "w") as bundle:
        bundle.writestr("dag.py", simple_dag("zipped_outside"))
    _refusal(client, str(outside_zip / "dag.py"))
    inside = hostile.dags / "member.zip"
    with zipfile.ZipFile(inside, "w") as bundle:
        bundle.writestr("dag.py", simple_dag("zipped_inside"))
    ledger = RawLedger(client)
    client.send(spawn_message("member-1", inside / "dag.py"))
    ledger.sent.add("member-1")
    ledger.pump_until(lambda: "member-1" in ledger.started, 30, "the member path to be accepted")
    client.send(Signal(id="member-1", signum=9))
    ledger.assert_balanced()
    hostile.assert_recovered(base)


FIRST_FRAMES = {
    "other_file": lambda h, outside: parse_request_frame(str(outside), str(h.dags)),
    "bundle_outside": lambda h, outside: parse_request_frame(str(h.canary_path), str(outside.parent)),
    "not_a_parse_request": lambda h, outside: parse_request_frame(str(h.canary_path), str(h.dags), "GetVariable"),
    "garbage": lambda h, outside: b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1",
    "huge_length": lambda h, outside: b"\x7f\xff\xff\xff",
}


@pytest.mark.parametrize("early", [False, True], ids=["after_started", "with_the_spawn"])
@pytest.mark.parametrize("kind", sorted(FIRST_FRAMES))
def test_first_frame_must_ask_for_the_spawned_file(
    hostile: Hostile, client: HostileClient, outside: Path, kind: str, early: bool
) -> None:
    """The worker parses what its first frame names: a spawn of an allowed path cannot smuggle another.

    The gate holds whether the frame follows ``started`` or the spawn itself (held for the worker)."""
    base = hostile.baseline()
    frame = FIRST_FRAMES[kind](hostile, outside)
    parse = run_raw_parse(client, f"smuggle-{kind}-{early}", hostile.canary_path, first_frame=frame, early=early)
    assert isinstance(parse.terminal, Error) and parse.terminal.code == "rejected_path", parse.describe()
    assert parse.started is not None
    wait_for(lambda: not pid_alive(parse.started.pid), 10, "the worker to be killed")
    assert not (outside.parent / "outside-was-parsed").exists()
    if kind == "other_file":
        assert str(outside) in parse.terminal.message
    hostile.assert_recovered(base)


def test_a_first_frame_sent_with_the_spawn_is_parsed(hostile: Hostile, client: HostileClient) -> None:
    base = hostile.baseline()
    parse = run_raw_parse(client, "early-1", hostile.canary_path, early=True)
    assert getattr(parse.terminal, "exit_code", None) == 0, parse.describe()
    assert hostile.canary_dag_id.encode() in parse.outputs["requests"]
    hostile.assert_recovered(base)


def test_input_before_the_worker_has_the_same_bound(hostile: Hostile, client: HostileClient) -> None:
    """A flood sent with the spawn is bounded: ``oversized`` while held, or refused by the gate once started."""
    base = hostile.baseline()
    ledger = RawLedger(client)
    ledger.spawn("early-flood", hostile.canary_path)
    chunk = b"\0" * (1024 * 1024)
    for _ in range(MAX_PENDING_INPUT // len(chunk) + 1):
        client.send(Input(id="early-flood", data=chunk))
    ledger.assert_balanced()
    codes = [error.code for error in ledger.errors if error.id == "early-flood" and error.code != "unknown_id"]
    assert len(codes) == 1 and codes[0] in ("oversized", "rejected_path"), codes
    hostile.assert_recovered(base)


def test_a_refusal_reaches_the_client_ledger_with_the_path(
    hostile: Hostile, driver: ParseDriver, outside: Path
) -> None:
    from zygote.client.connection import ZygoteConnection
    from zygote.client.ledger import Ledger

    conn: Any = ZygoteConnection(hostile.zygote.settings, Ledger())
    try:
        wait_for(lambda: conn.available, 30, "the client to connect")
        assert conn._session.early_input  # this gateway holds a first frame sent with the spawn
        base = hostile.baseline()
        # The refusal arrives after start_zygote returned; under fallback=local it is parsed here.
        parsed = driver.finish(driver.start_zygote(conn, outside, outside.parent))
        assert not parsed.proc.is_remote
        [entry] = conn.ledger.entries
        assert (entry.outcome, entry.path) == ("rejected_path", str(outside))
        assert str(outside) in entry.detail
        hostile.assert_recovered(base, conn.ledger)
    finally:
        conn.close()
