"""Defaults every team DAG uses, and the environment id the providers' example DAGs derive at parse time."""

from __future__ import annotations

import inspect
import os
from datetime import timedelta

import pendulum

START = pendulum.datetime(2024, 1, 1, tz="UTC")
DEFAULT_ARGS = {"owner": "data-platform", "retries": 2, "retry_delay": timedelta(minutes=5)}


def env_id() -> str:
    """Like the providers' ``SystemTestContextBuilder``: name things after the calling DAG file."""
    caller = inspect.stack()[1].filename
    return os.path.splitext(os.path.basename(caller))[0].replace("_", "-")


def tags(*extra: str) -> list[str]:
    return ["corpus", *extra]
