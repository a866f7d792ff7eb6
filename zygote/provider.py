"""Airflow provider registration: the ``[zygote]`` config section and the ``airflow zygote`` CLI."""

from __future__ import annotations

from typing import Any

from zygote import __version__
from zygote.config import provider_config


def get_provider_info() -> dict[str, Any]:
    """Return provider metadata for Airflow's ``ProvidersManager`` (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "airflow-zygote",
        "name": "Zygote",
        "description": "Prefork parsing server for the DAG processor: frozen heap, verified preloads.",
        "versions": [__version__],
        "config": provider_config(),
        "cli": ["zygote.cli.definition.get_zygote_cli_commands"],
    }
