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


# Records, in ``<file>.jsonl``, how much of inspect's module map the parse found filled and what its
# first ``inspect.stack()`` cost: one line per parse, stock and zygote alike.
STACK_PROBE = """# airflow DAG
import inspect, json, sys, time
from pathlib import Path

mapped = sum(1 for name in list(sys.modules) if name in inspect._filesbymodname)
files = sum(1 for module in list(sys.modules.values()) if isinstance(getattr(module, "__file__", None), str))
start = time.perf_counter()
inspect.stack()
first_s = time.perf_counter() - start
with Path(__file__).with_suffix(".jsonl").open("a") as out:
    out.write(json.dumps({"mapped": mapped, "files": files, "modules": len(sys.modules), "first_s": first_s}) + "\\n")
"""
