"""``ready.config``: what a generation read for the gateway, without the secrets."""

from __future__ import annotations

import pytest

from zygote.config import Settings
from zygote.forker.ready import generation_config
from zygote.handshake import config_fingerprint


def test_ready_config_carries_settings_roots_and_fingerprint_but_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        socket="ipc:///tmp/x.sock",
        curve_server_secret_key="do-not-send",
        allowed_roots=("/opt/dags/current", "/opt/bundles"),
        worker_memory_limit=512,
    )
    config = generation_config(settings)
    assert config["roots"] == ["/opt/dags/current", "/opt/bundles"]  # as configured, unresolved
    assert config["fingerprint"] == config_fingerprint()
    assert config["settings"]["worker_memory_limit"] == 512
    assert config["settings"]["allowed_roots"] == ["/opt/dags/current", "/opt/bundles"]
    assert "curve_server_secret_key" not in config["settings"]
    assert "do-not-send" not in repr(config)
    assert Settings(**{**config["settings"], "allowed_roots": tuple(config["roots"])}).worker_memory_limit == 512
