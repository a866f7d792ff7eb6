"""The first-frame gate: file must match the spawn, the frame is bounded and decoded only as needed."""

from __future__ import annotations

import tracemalloc
from typing import Any

import msgspec

from zygote.gateway.parse_gate import MAX_FIRST_FRAME, WAIT, Passed, check_first_frame


def _frame(body: Any) -> bytes:
    payload = msgspec.msgpack.encode([0, body, None])
    return len(payload).to_bytes(4, "big") + payload


def _request(**overrides: Any) -> dict[str, Any]:
    return {"type": "DagFileParseRequest", "file": "/dags/f.py", "bundle_path": "/dags", **overrides}


def test_waits_for_the_whole_frame_then_passes_with_the_bundle_path() -> None:
    frame = _frame(_request(callback_requests=[{"x": 1}]))
    assert check_first_frame(b"", "/dags/f.py") is WAIT
    assert check_first_frame(frame[:-1], "/dags/f.py") is WAIT
    assert check_first_frame(frame + b"more input", "/dags/f.py") == Passed("/dags")


def test_another_file_another_type_or_garbage_is_refused() -> None:
    assert "the spawn named" in str(check_first_frame(_frame(_request(file="/etc/passwd")), "/dags/f.py"))
    assert "not a DagFileParseRequest" in str(check_first_frame(_frame(_request(type="GetVariable")), "/dags/f.py"))
    assert "no bundle_path" in str(check_first_frame(_frame(_request(bundle_path=None)), "/dags/f.py"))
    assert "not a parse request frame" in str(check_first_frame(_frame("just a string"), "/dags/f.py"))
    garbage = b"\x00\x00\x00\x03\xc1\xc1\xc1"
    assert "not a parse request frame" in str(check_first_frame(garbage, "/dags/f.py"))


def test_a_frame_announcing_more_than_the_bound_is_refused_before_it_arrives() -> None:
    header = (MAX_FIRST_FRAME + 1).to_bytes(4, "big")
    assert "more than" in str(check_first_frame(header, "/dags/f.py"))


def test_a_frame_of_many_empty_arrays_is_skipped_not_built() -> None:
    body = _request(callback_requests=[[] for _ in range(500_000)])
    frame = _frame(body)
    tracemalloc.start()
    try:
        assert check_first_frame(frame, "/dags/f.py") == Passed("/dags")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * len(frame), f"decoding a {len(frame)} byte frame peaked at {peak} bytes"
