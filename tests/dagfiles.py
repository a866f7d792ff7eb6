"""DAG files written by tests: normal ones and the misbehaving kinds a zygote must survive."""

from __future__ import annotations

from pathlib import Path

HEADER = "from __future__ import annotations\nimport datetime\nfrom airflow.sdk import DAG\n"


def simple_dag(dag_id: str, tasks: int = 2) -> str:
    return (
        HEADER
        + "from airflow.providers.standard.operators.empty import EmptyOperator\n"
        + f"with DAG({dag_id!r}, schedule=None, start_date=datetime.datetime(2024, 1, 1)) as dag:\n"
        + "".join(f"    EmptyOperator(task_id='t{i}')\n" for i in range(tasks))
    )


def misbehaving(body: str) -> str:
    """A DAG file whose top level does ``body`` (after defining nothing)."""
    return "import os, sys, signal, time\n" + body + "\n"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path
