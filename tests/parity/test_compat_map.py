"""The handshake's compatibility map and the refusal text (pure parts; one fresh interpreter)."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zygote.compat import IMPORT_TIME_OPTIONS, PROVIDER_PREFIXES, folder_digest, local_settings_digest, providers
from zygote.handshake import MAX_LISTED, config_mismatch

pytestmark = pytest.mark.timeout(120)


def test_equal_maps_pass() -> None:
    ours = {"option:email.default_email_on_failure": "True", "provider:apache-airflow-providers-standard": "1.0"}
    assert config_mismatch(ours, dict(ours)) == ""


def test_a_refusal_names_each_difference_with_both_values() -> None:
    ours = {
        "option:email.default_email_on_failure": "False",
        "provider:apache-airflow-providers-standard": "1.21.0",
        "plugins_folder": "absent",
    }
    theirs = {
        "option:email.default_email_on_failure": "True",
        "provider:apache-airflow-providers-smtp": "3.2.0",
        "plugins_folder": "2 files, sha256:0123456789abcdef",
    }
    text = config_mismatch(ours, theirs)
    assert "[email] default_email_on_failure: dag-processor 'True' vs zygote 'False'" in text
    assert "distribution apache-airflow-providers-standard: dag-processor (not set) vs zygote '1.21.0'" in text
    assert "distribution apache-airflow-providers-smtp: dag-processor '3.2.0' vs zygote (not set)" in text
    assert "plugins_folder: dag-processor '2 files, sha256:0123456789abcdef' vs zygote 'absent'" in text
    assert text.startswith("4 setting(s)")


def test_a_long_refusal_stays_within_the_str_limit() -> None:
    ours = {f"option:core.o{i}": "x" * 5000 for i in range(100)}
    text = config_mismatch(ours, {})
    assert f"and {100 - MAX_LISTED} more" in text
    assert len(text.encode()) < 16 * 1024


def test_sensitive_options_cross_only_as_digests(tmp_path: Path) -> None:
    code = "import json; from zygote.compat import compatibility_map; print(json.dumps(compatibility_map()))"
    env = {**os.environ, "AIRFLOW__SECRETS__BACKEND_KWARGS": '{"token": "never-on-the-wire"}'}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=100, check=True
    )
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["option:secrets.backend_kwargs"].startswith("sha256:")
    assert "never-on-the-wire" not in done.stdout
    assert {f"option:{name}" for name in IMPORT_TIME_OPTIONS} <= set(found)
    assert found["option:email.default_email_on_failure"] == "True"
    assert found["provider:apache-airflow-providers-standard"] == providers()["apache-airflow-providers-standard"]


def test_plugins_digest_follows_names_and_contents_not_bytecode(tmp_path: Path) -> None:
    assert folder_digest(str(tmp_path / "missing")) == "absent"
    (tmp_path / "plugin.py").write_text("A = 1\n")
    first = folder_digest(str(tmp_path))
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "plugin.cpython-311.pyc").write_bytes(b"\0")
    assert folder_digest(str(tmp_path)) == first
    (tmp_path / "plugin.py").write_text("A = 2\n")
    second = folder_digest(str(tmp_path))
    (tmp_path / "plugin.py").rename(tmp_path / "renamed.py")
    assert len({first, second, folder_digest(str(tmp_path))}) == 3
    assert first.startswith("1 files, sha256:")


def test_local_settings_digest_follows_the_module_airflow_would_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("airflow_local_settings") is not None:
        pytest.skip("this environment has its own airflow_local_settings")
    assert local_settings_digest() == "absent"
    (tmp_path / "airflow_local_settings.py").write_text("def dag_policy(dag):\n    dag.tags = ['x']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    first = local_settings_digest()
    (tmp_path / "airflow_local_settings.py").write_text("def dag_policy(dag):\n    dag.tags = ['y']\n")
    assert first.startswith("sha256:") and local_settings_digest() not in (first, "absent")


def test_providers_match_what_importlib_metadata_reports() -> None:
    reference = {}
    for dist in importlib.metadata.distributions():
        name = str(dist.metadata["Name"]).lower().replace("_", "-")
        if name.startswith(PROVIDER_PREFIXES):
            reference.setdefault(name, dist.version)
    assert providers() == reference
    assert "apache-airflow-providers-standard" in reference


def test_a_control_hello_carries_versions_only() -> None:
    from protocol import decode, encode
    from zygote.handshake import control_hello, versions

    hello = control_hello("control-1")
    assert (hello.role, hello.config, hello.process) == ("control", {}, {})
    assert {"protocol": hello.protocol, "airflow": hello.airflow, "python": hello.python} == versions()
    assert decode(encode(hello)) == hello
