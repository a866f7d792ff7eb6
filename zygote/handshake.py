"""The session handshake: the hellos, versions, and the compatibility map compared at ``hello``.

A stock parse child inherits its dag-processor's environment and configuration; a zygote worker
gets them from ``hello.process`` (:mod:`zygote.process_env`). What the forker consumed while it
imported Airflow cannot be handed over that way, so both sides compute the map of
:mod:`zygote.compat` and the gateway refuses a client whose map differs, naming each difference
with both values (SPEC.md 4).
"""

from __future__ import annotations

import platform
from typing import Any

from protocol import Hello
from zygote.config import Settings


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
    """The handshake's ``config`` map: what a worker cannot take from the client (:mod:`zygote.compat`)."""
    from zygote.compat import compatibility_map

    return compatibility_map()


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
    """Each entry that differs, with both sides' values (sensitive options are digests); empty if none."""
    differing = sorted(key for key in set(ours) | set(theirs) if ours.get(key) != theirs.get(key))
    if not differing:
        return ""
    shown = [
        f"{_label(key)}: dag-processor {_shown(theirs.get(key))} vs zygote {_shown(ours.get(key))}"
        for key in differing[:MAX_LISTED]
    ]
    more = f"; and {len(differing) - MAX_LISTED} more" if len(differing) > MAX_LISTED else ""
    return (
        f"{len(differing)} setting(s) the zygote consumed at start-up differ from the dag-processor's: "
        + "; ".join(shown)
        + more
        + ". Give both containers the same image and the same values for these."
    )


MAX_LISTED = 20
"""Differences named in one refusal (its text must fit the protocol's str limit)."""


def _label(key: str) -> str:
    kind, _, name = key.partition(":")
    if kind == "option":
        section, _, option = name.partition(".")
        return f"[{section}] {option}"
    if kind == "provider":
        return f"distribution {name}"
    return key


def _shown(value: object) -> str:
    if value is None:
        return "(not set)"
    text = repr(str(value))
    return text if len(text) <= 300 else text[:300] + "...'"
