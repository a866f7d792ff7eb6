"""The gateway's ``load.gauges``: the forker's sampled status becomes pooled, RSS and preload counts."""

from __future__ import annotations

from typing import Any

from zygote.forker.preload import ModuleState
from zygote.gateway.status import FORKER_SAMPLE_S, PRELOAD_STATES, ForkerSample, StatusBook

MIB = 1024 * 1024


def _forker_status(generation: int, **forker: Any) -> dict[str, Any]:
    return {
        "forker": {"generation": generation, "rss": 150 * MIB, **forker},
        "preload": {"pandas": {"state": "loaded"}, "numpy": {"state": "loaded"}, "bad": {"state": "rejected"}},
    }


def test_the_gateway_knows_every_preload_state_of_the_forker() -> None:
    assert set(PRELOAD_STATES) == {state.value for state in ModuleState}


def test_a_sample_gives_rss_and_every_preload_state_with_zeros() -> None:
    sample = ForkerSample()
    sample.record(_forker_status(3))
    gauges = sample.gauges(3)
    assert gauges["forker_rss"] == 150 * MIB
    assert gauges["preload"] == {"loaded": 2, "rejected": 1, "pending": 0, "probing": 0, "verified": 0, "not_seen": 0}


def test_pooled_is_zero_until_the_forker_reports_a_pool() -> None:
    sample = ForkerSample()
    assert sample.gauges(1) == {"pooled": 0}
    sample.record(_forker_status(1))
    assert sample.gauges(1)["pooled"] == 0
    sample.record(_forker_status(1, pooled=4))
    assert sample.gauges(1)["pooled"] == 4


def test_another_generations_sample_is_not_reported() -> None:
    sample = ForkerSample()
    sample.record(_forker_status(1))
    assert sample.gauges(2) == {"pooled": 0}


def test_a_sample_is_due_every_interval() -> None:
    sample = ForkerSample()
    assert sample.due(100.0)
    assert sample.asked(100.0) == ForkerSample.SAMPLE_ID
    assert not sample.due(100.0 + FORKER_SAMPLE_S / 2)
    assert sample.due(100.0 + FORKER_SAMPLE_S)


def test_a_user_status_refreshes_the_sample() -> None:
    from zygote.gateway.status import GatewaySnapshot

    book = StatusBook()
    snapshot = GatewaySnapshot(versions={}, gateway={}, serving=True, current=None, generation=2, workers={})
    report = book.assemble(snapshot, _forker_status(2, pooled=2, threads=1))
    assert report["workers"]["pooled"] == 2
    assert book.forker_sample.gauges(2)["pooled"] == 2
