"""Fixtures for fault scenarios: homes made from the session's migrated DB, zygotes and dag-processors
that are all stopped after the test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "client"))  # e2e_support: the DB row readers

from fault_home import FaultHome
from processes import DagProcessor


@pytest.fixture
def make_home(tmp_path: Path, migrated_db: Path, airflow_env: dict[str, str]) -> Any:
    """``make_home(name, dags=None, **settings)``: one side of a scenario with its own DB copy."""

    def make(name: str, dags: Path | None = None, **settings: str) -> FaultHome:
        return FaultHome.create(tmp_path / name, migrated_db, airflow_env, dags, **settings)

    return make


@pytest.fixture
def start_processor() -> Iterator[Any]:
    """``start_processor(home, stock=False)``: a running dag-processor, stopped after the test."""
    started: list[DagProcessor] = []

    def start(home: FaultHome, stock: bool = False) -> DagProcessor:
        processor = DagProcessor.start(home, stock=stock)
        started.append(processor)
        return processor

    yield start
    for processor in started:
        processor.stop()
