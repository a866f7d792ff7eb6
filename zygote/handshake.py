"""Versions and a fingerprint of the parse-relevant Airflow settings, compared at handshake.

A setting given to one side only changes what a parse produces (the spike saw one such setting
change every DAG hash). Both sides hash the options of the sections below; sensitive options are
hashed too (the hash reveals nothing) but DB and secret-key material never is.
"""

from __future__ import annotations

import hashlib
import json
import platform
from typing import Any

from protocol import Hello
from zygote.config import Settings

PARSE_SECTIONS = ("core", "secrets", "operators")
"""Sections read by parse code; compared whole, less :data:`IGNORED`."""

PARSE_OPTIONS = (
    ("dag_processor", "dag_version_inflation_check_level"),
    ("dag_processor", "dag_bundle_config_list"),
    ("dag_processor", "dag_bundle_storage_path"),
)
"""The few ``[dag_processor]`` options a parse child reads; the rest schedule files in the manager."""

IGNORED = frozenset(
    {
        ("core", "fernet_key"),
        ("core", "internal_api_secret_key"),
        ("core", "hostname_callable"),
        ("core", "executor"),
        ("core", "parallelism"),
        ("core", "sql_alchemy_conn"),
    }
)


def versions() -> dict[str, Any]:
    from airflow import __version__ as airflow_version

    from protocol import PROTOCOL_VERSION

    return {
        "protocol": PROTOCOL_VERSION,
        "airflow": airflow_version,
        "python": platform.python_version(),
    }


def client_hello(client: str, settings: Settings) -> Hello:
    """The dag-processor's hello: versions, the compatibility map and what its workers inherit (SPEC 4a).

    Built once per session: folding the configuration runs ``_cmd`` commands and secrets lookups.
    """
    from zygote.process_env import process_snapshot

    process = process_snapshot(secrets=(settings.curve_client_secret_key,))
    return Hello(client=client, role="client", config=config_fingerprint(), process=process, **versions())


def control_hello(client: str) -> Hello:
    """The ``status`` / ``reload`` tools' hello: versions only, nothing crosses."""
    return Hello(client=client, role="control", **versions())


def config_fingerprint() -> dict[str, str]:
    """``section.option`` -> short hash of its effective value, for :data:`PARSE_SECTIONS`."""
    from airflow.configuration import conf

    values = {
        (section, option): value
        for section in PARSE_SECTIONS
        for option, value in (conf.getsection(section) or {}).items()
        if (section, option) not in IGNORED
    }
    values.update({(section, option): conf.get(section, option, fallback="") for section, option in PARSE_OPTIONS})
    return {
        f"{section}.{option}": hashlib.sha256(_canonical(value).encode()).hexdigest()[:16]
        for (section, option), value in sorted(values.items())
    }


def _canonical(value: object) -> str:
    """The same setting written in airflow.cfg or taken from the defaults may differ in layout only."""
    text = str(value)
    try:
        return json.dumps(json.loads(text), sort_keys=True)
    except ValueError:
        return " ".join(text.split())


def version_mismatch(ours: dict[str, Any], theirs: dict[str, Any], role: str) -> str:
    """Why the two sides may not work together, naming both values; empty when they may."""
    keys = ["protocol"] if role == "control" else ["protocol", "airflow", "python"]
    diffs = [f"{key}: client {theirs.get(key)} vs zygote {ours[key]}" for key in keys if not _same(key, ours, theirs)]
    return "; ".join(diffs)


def _same(key: str, ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    if key == "python":
        return _major_minor(str(ours[key])) == _major_minor(str(theirs.get(key, "")))
    return bool(ours[key] == theirs.get(key))


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def config_mismatch(ours: dict[str, str], theirs: dict[str, Any]) -> str:
    """Options whose values differ between the two sides (names only, never values)."""
    differing = sorted(key for key in set(ours) | set(theirs) if ours.get(key) != theirs.get(key))
    if not differing:
        return ""
    return (
        f"{len(differing)} parse-relevant Airflow option(s) differ between dag-processor and zygote: "
        + ", ".join(differing[:20])
        + ". Give both containers the same Airflow configuration."
    )
