"""A hostile or broken peer on the wire: the gateway answers, keeps serving, and loses nothing.

One zygote serves the whole module (4 workers, 600 queue slots). Each scenario ends with
``assert_recovered``: a canary parse succeeds, no process or descriptor is left behind, and every
request id the scenario sent got exactly one terminal reply.
"""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import gateway_fuzz
import msgpack
import pytest
from hostile_support import Hostile, HostileClient, RawLedger, hostile_zygote, parse_request_frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zygote_harness import pid_alive, spawn_message, wait_for

from protocol import (
    MAX_FRAME,
    Credit,
    Error,
    Heartbeat,
    Input,
    ProtocolError,
    Signal,
    Spawn,
    Started,
    StatusReply,
    StatusRequest,
    Welcome,
    decode,
    encode,
)

pytestmark = pytest.mark.e2e

MAX_WORKERS = 4
MAX_QUEUED = 600
from zygote.gateway.loop import CREDIT_WINDOW  # noqa: E402  (what the welcome announces)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    with hostile_zygote(
        tmp_path_factory.mktemp("protocol"),
        "protocol",
        AIRFLOW__ZYGOTE__MAX_WORKERS=str(MAX_WORKERS),
        AIRFLOW__ZYGOTE__MAX_QUEUED=str(MAX_QUEUED),
    ) as zygote:
        yield zygote


@pytest.fixture
def client(hostile: Hostile) -> Iterator[HostileClient]:
    session = HostileClient(hostile.endpoint)
    session.hello()
    yield session
    session.close()


def _expect_error(client: HostileClient, code: str) -> Error:
    message = client.expect(Error, timeout=10)
    assert message.code == code, message
    return message


def _body(**fields: object) -> bytes:
    return bytes(msgpack.packb(fields, use_bin_type=True))


BROKEN_FRAMES = {
    "malformed": b"\xc1",  # a byte msgpack never uses
    "truncated": encode(StatusRequest(id="cut"))[:-3],
    "unknown_type": _body(v=1, t="launch_missiles"),
    "version_mismatch": _body(v=2, t="heartbeat"),
    "oversized": b"\x00" * (MAX_FRAME + 16),  # over MAX_FRAME, under the socket's MAXMSGSIZE
}


@pytest.mark.parametrize("code", sorted(BROKEN_FRAMES))
def test_broken_frames_are_answered_and_change_nothing(hostile: Hostile, client: HostileClient, code: str) -> None:
    base = hostile.baseline()
    client.send_raw(BROKEN_FRAMES[code])
    error = _expect_error(client, code)
    assert error.id == ""
    stranger = HostileClient(hostile.endpoint, "no-hello")
    stranger.send_raw(BROKEN_FRAMES[code])  # before hello: decoding is judged first, the same way
    _expect_error(stranger, code)
    stranger.close()
    ledger = RawLedger(client)
    ledger.barrier()  # the session survived its broken frames
    hostile.assert_recovered(base)


def test_wrong_frame_count_and_missing_hello(hostile: Hostile, client: HostileClient) -> None:
    base = hostile.baseline()
    client.send_raw(encode(Heartbeat()), encode(Heartbeat()))
    _expect_error(client, "malformed")
    stranger = HostileClient(hostile.endpoint, "no-hello")
    stranger.send(StatusRequest(id="s"))
    _expect_error(stranger, "hello_required")
    stranger.send_raw(b"", encode(Heartbeat()))
    _expect_error(stranger, "malformed")
    stranger.close()
    hostile.assert_recovered(base)


@pytest.mark.parametrize("field", ["protocol", "airflow", "python"])
def test_wrong_versions_are_refused_by_name(hostile: Hostile, field: str) -> None:
    base = hostile.baseline()
    wrong = {"protocol": 99, "airflow": "2.0.0", "python": "2.7.18"}[field]
    client = HostileClient(hostile.endpoint, "old")
    from protocol import Hello
    from zygote.handshake import config_fingerprint, versions

    ours = {**versions(), field: wrong}
    client.send(Hello(client=client.name, role="client", config=config_fingerprint(), **ours))
    error = _expect_error(client, "version_mismatch")
    assert str(wrong) in error.message
    client.send(StatusRequest(id="after-refusal"))
    _expect_error(client, "hello_required")  # a refused hello opens no session
    client.close()
    hostile.assert_recovered(base)


def test_frame_over_the_socket_limit_drops_only_that_connection(hostile: Hostile, client: HostileClient) -> None:
    base = hostile.baseline()
    client.send_raw(b"\x00" * (MAX_FRAME * 2))  # libzmq closes the connection (MAXMSGSIZE)
    answered: list[StatusReply] = []
    refused: list[Error] = []

    def status_answered() -> bool:
        """Lazy Pirate: the DEALER reconnects by itself; its closed connection ended the session, so
        the gateway asks for a new ``hello`` (SPEC 4) and then answers."""
        client.send(StatusRequest(id="after-oversize"))
        message = client.poll_message(0.5)
        while message is not None and not isinstance(message, StatusReply):
            if isinstance(message, Error) and message.code == "hello_required":
                refused.append(message)
                client.hello()
                client.send(StatusRequest(id="after-oversize"))
            message = client.poll_message(0.5)
        if message is not None:
            answered.append(message)
        return bool(answered)

    wait_for(status_answered, 20, "the oversized sender's session to answer again", interval=0)
    assert refused, "the closed connection ended the session at once"
    hostile.assert_recovered(base)


def test_duplicate_request_id_leaves_the_open_request_untouched(hostile: Hostile, client: HostileClient) -> None:
    base = hostile.baseline()
    ledger = RawLedger(client)
    ledger.spawn("dup-1", hostile.canary_path)
    started = client.expect(Started, request_id="dup-1")
    ledger.record(started)
    ledger.spawn("dup-1", hostile.canary_path)
    error = _expect_error(client, "duplicate_id")
    assert error.id == "dup-1"
    assert pid_alive(started.pid)
    client.send(Signal(id="dup-1", signum=signal.SIGKILL))
    ledger.wait_terminal()
    ledger.assert_balanced()
    assert not pid_alive(started.pid)
    hostile.assert_recovered(base)


def test_messages_for_unknown_ids_are_not_terminal(hostile: Hostile, client: HostileClient) -> None:
    base = hostile.baseline()
    for message in (Input(id="ghost", data=b"x"), Credit(id="ghost", size=5), Signal(id="ghost", signum=9)):
        client.send(message)
        assert _expect_error(client, "unknown_id").id == "ghost"
    hostile.assert_recovered(base)


@pytest.mark.parametrize("signum", [0, -9, 65, 2**40])
def test_a_bad_signal_number_is_refused_without_ending_the_request(
    hostile: Hostile, client: HostileClient, signum: int
) -> None:
    base = hostile.baseline()
    ledger = RawLedger(client)
    ledger.spawn("badsig-1", hostile.canary_path)
    started = client.expect(Started, request_id="badsig-1")
    client.send(Signal(id="badsig-1", signum=signum))
    error = _expect_error(client, "malformed")
    assert error.id == "" and "badsig-1" in error.message
    assert pid_alive(started.pid) and hostile.zygote.popen.poll() is None
    client.send(Signal(id="badsig-1", signum=signal.SIGKILL))
    ledger.assert_balanced()
    hostile.assert_recovered(base)


def test_client_vanishing_mid_request_has_its_worker_killed(hostile: Hostile) -> None:
    base = hostile.baseline()
    before = hostile.zygote.status()["requests"].get("client_gone", 0)
    client = HostileClient(hostile.endpoint, "vanishing")
    client.hello()
    client.send(spawn_message("gone-1", hostile.canary_path))
    started = client.expect(Started, request_id="gone-1")
    client.send(Input(id="gone-1", data=parse_request_frame(str(hostile.canary_path), str(hostile.dags))[:10]))
    client.close()  # no goodbye, half a parse request sent: the closed connection tells
    wait_for(lambda: not pid_alive(started.pid), 30, "the vanished client's worker to be killed")
    wait_for(lambda: hostile.zygote.status()["requests"].get("client_gone", 0) == before + 1, 10, "client_gone")
    hostile.assert_recovered(base)


def test_slow_client_gets_no_more_than_its_credit(hostile: Hostile, client: HostileClient) -> None:
    """A client that does not acknowledge output stalls its own worker, never the gateway."""
    base = hostile.baseline()
    chatty = hostile.dags / "chatty.py"
    chatty.write_text("# airflow DAG\nimport sys\nfor _ in range(8):\n    sys.stderr.write('e' * 1048576)\n")
    ledger = RawLedger(client, credit=False)
    ledger.spawn("slow-1", chatty)
    started = client.expect(Started, request_id="slow-1")
    client.send(Input(id="slow-1", data=parse_request_frame(str(chatty), str(chatty.parent))))
    client.send(Credit(id="slow-1", size=2**62))  # a lie: credit never opens past the window
    ledger.pump_until(lambda: ledger.output_bytes["slow-1"] >= CREDIT_WINDOW, 30, "a window of output")
    ledger.barrier()
    assert ledger.output_bytes["slow-1"] == CREDIT_WINDOW
    assert pid_alive(started.pid)  # blocked on its own output, as against a slow dag-processor
    ledger.credit = True
    client.send(Credit(id="slow-1", size=CREDIT_WINDOW))
    ledger.pump_until(lambda: ledger.output_bytes["slow-1"] >= 8 * 2**20, 30, "the rest of the output")
    client.send(Signal(id="slow-1", signum=signal.SIGKILL))  # it would wait for an answer to its result
    ledger.assert_balanced()
    hostile.assert_recovered(base)


def test_a_thousand_requests_at_once(hostile: Hostile, client: HostileClient) -> None:
    """600 queue, 4 run, the rest are overloaded; cancelling all of them leaves one reply each."""
    base = hostile.baseline()
    ledger = RawLedger(client)
    ids = [f"burst-{i}" for i in range(1000)]
    for request_id in ids:
        ledger.spawn(request_id, hostile.canary_path)
    for request_id in ids:
        client.send(Signal(id=request_id, signum=signal.SIGKILL))
    ledger.assert_balanced()
    overloaded = [e for e in ledger.errors if e.code == "overloaded"]
    assert len(overloaded) == 1000 - MAX_QUEUED - MAX_WORKERS
    assert sum(ledger.terminals.values()) == 1000
    assert len(ledger.started) <= MAX_WORKERS + 8  # cancelled in the queue, not forked and killed
    hostile.assert_recovered(base)


def test_every_way_of_ending_a_request_is_counted_once(hostile: Hostile, client: HostileClient) -> None:
    """The status counters agree with what the client saw."""
    before = hostile.zygote.status()["requests"]
    base = hostile.baseline()
    ledger = RawLedger(client)
    ledger.spawn("count-killed", hostile.canary_path)
    ledger.spawn("count-rejected", Path("/etc/hostname"))
    client.send(Signal(id="count-killed", signum=signal.SIGKILL))
    ledger.assert_balanced()
    after = hostile.zygote.status()["requests"]
    assert after.get("killed", 0) == before.get("killed", 0) + 1
    assert after.get("rejected_path", 0) == before.get("rejected_path", 0) + 1
    hostile.assert_recovered(base)


# --- fuzzing ---------------------------------------------------------------------------------------

FUZZ_ROOT = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / "hostile-protocol"
_fuzz_ids = itertools.count(1)


def test_gateway_fuzz(hostile: Hostile, client: HostileClient) -> None:
    """Random and mutated frames through the real ROUTER; real workers get hostile first frames.

    After every example the session still answers (a status barrier) and each spawn of a real file
    got exactly one terminal reply; after all of them the zygote passes the usual checks and never
    logged an internal error.
    """
    assert hostile.dags == FUZZ_ROOT
    base = hostile.baseline()

    @settings(
        max_examples=120,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(program=st.lists(gateway_fuzz.steps(FUZZ_ROOT), min_size=1, max_size=4))
    def fuzz(program: list[tuple[str, list[bytes]]]) -> None:
        _run_program(hostile, client, program)

    fuzz()
    hostile.assert_recovered(base)


def _run_program(hostile: Hostile, client: HostileClient, program: list[tuple[str, list[bytes]]]) -> None:
    ledger = RawLedger(client)
    workers: list[tuple[str, list[bytes]]] = []
    for kind, parts in program:
        if kind == "raw":
            client.send_raw(*parts)
            if len(parts) == 1 and _decodes_to(parts[0], Spawn):
                ledger.raw_spawns[decode(parts[0]).id] += 1
            continue
        request_id = f"fz-{next(_fuzz_ids)}"
        ledger.spawn(request_id, hostile.canary_path, timeout=5.0)
        workers.append((request_id, parts))
    for request_id, chunks in workers:
        ledger.pump_until(
            lambda rid=request_id: rid in ledger.started or ledger.terminals[rid] > 0, 30, f"{request_id} to start"
        )
        for chunk in chunks:
            client.send(Input(id=request_id, data=chunk))
        client.send(Signal(id=request_id, signum=signal.SIGKILL))
    ledger.assert_balanced()


def test_saved_gateway_corpus_replays(hostile: Hostile, client: HostileClient) -> None:
    """Every saved case: the session answers after it, a stranger gets one reply, spawns end once."""
    cases = sorted(gateway_fuzz.CORPUS_DIR.glob("*.msgpack"))
    assert len(cases) >= 40
    base = hostile.baseline()
    ledger = RawLedger(client)
    spawns = 0
    for case in cases:
        parts = gateway_fuzz.read_case(case)
        client.send_raw(*parts)
        ledger.barrier()
        spawns += len(parts) == 1 and _decodes_to(parts[0], Spawn)
        stranger = HostileClient(hostile.endpoint, "corpus")
        stranger.send_raw(*parts)
        reply = stranger.recv(10)
        stranger.close()
        assert isinstance(reply, Error | Welcome), (case.name, reply)
    assert ledger.terminals["fz"] == spawns, ledger.terminals
    assert all(e.code == "rejected_path" for e in ledger.errors if e.id == "fz")
    hostile.assert_recovered(base)


def _decodes_to(data: bytes, kind: type) -> bool:
    try:
        return isinstance(decode(data), kind)
    except ProtocolError:
        return False
