"""``airflow zygote status`` (human form): health, load and whether recent parses used the zygote."""

from __future__ import annotations

from typing import Any

from zygote.cli.commands import _human

MIB = 1024 * 1024


def _report(**overrides: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "healthy": True,
        "reason": "",
        "versions": {"protocol": 1, "airflow": "3.3.2", "python": "3.11.7"},
        "gateway": {"pid": 10, "clients": 1, "uptime_s": 12.5, "draining": False},
        "forker": {"pid": 11, "generation": 2, "state": "ready", "threads": 1, "frozen_objects": 9, "rss": 150 * MIB},
        "workers": {"running": 1, "queued": 0, "max": 4},
        "requests": {"exited": 40, "failed": 2, "overloaded": 3},
        "recent": {"window_s": 300.0, "spawns": 45, "refused": {"overloaded": 3}},
        "fork_ms": {"count": 42, "p50": 7.5, "p95": 9.0, "max": 12.0},
        "parse_s": {"count": 42, "p50": 0.1, "p95": 0.3, "max": 0.5},
        "worker_peak_uss": {"count": 42, "p50": 20 * MIB, "p95": 30 * MIB, "max": 40 * MIB},
        "worker_peak_pss": {"count": 0},
        "preload": {"pandas": {"state": "loaded"}, "bad": {"state": "rejected", "reason": "started a thread"}},
    }
    report.update(overrides)
    return report


def test_healthy_zygote_in_use() -> None:
    text = _human(_report())
    assert text.splitlines()[0] == "healthy:   True"
    assert "requests:  42 parsed by the zygote (exited 40, failed 2), 3 not (overloaded 3)" in text
    assert (
        "recent:    used: of the last 45 spawns in 300.0 s, 42 parsed by the zygote, 3 refused (overloaded 3)" in text
    )
    assert "forker:    pid 11, generation 2, ready, threads 1, frozen 9, rss 150 MiB" in text
    assert "workers:   running 1 of 4, queued 0, pooled 0" in text
    assert "fork:      p50 7.5 ms, p95 9.0 ms, max 12.0 ms (42 samples)" in text
    assert "peak USS:  p50 20.0 MiB, p95 30.0 MiB, max 40.0 MiB (42 samples)" in text
    assert "peak PSS:  no samples yet" in text
    assert "preload:   loaded 1, rejected 1" in text
    assert "  rejected bad: started a thread" in text


def test_a_zygote_that_refuses_everything_says_bypassed_and_why() -> None:
    recent = {"window_s": 300.0, "spawns": 8, "refused": {"rejected_path": 8}}
    text = _human(_report(healthy=False, reason="8 of the last 8 spawns were refused", recent=recent))
    assert text.splitlines()[0] == "healthy:   False (8 of the last 8 spawns were refused)"
    assert "recent:    bypassed: of the last 8 spawns in 300.0 s, 0 parsed by the zygote, 8 refused" in text


def test_a_status_without_a_recent_window_or_samples_still_prints() -> None:
    text = _human({"healthy": False, "forker": None, "requests": {}})
    assert "requests:  0 parsed by the zygote, 0 not" in text
    assert "recent:" not in text
    assert "fork:      no samples yet" in text
