"""What a parse produces and sees in a zygote worker is what it does in a stock child.

Import errors, byte for byte, whatever raised: each shape is parsed twice, by Airflow's own ``DagFileProcessorProcess`` (a fork of this process)
and by a worker of one shared zygote, with ``[core] dagbag_import_error_traceback_depth`` at 100 so
the whole traceback is compared, not only the last two frames the UI shows by default. The shapes
are those real DAG folders hit: an error in the DAG file, in a module it imports, two imports down,
``ModuleNotFoundError`` direct and nested, ``importlib.import_module`` of a raising, missing or
broken module (no C-level frame trimming happens on that path, so a timer frame would show),
a ``SyntaxError`` in a helper, a missing name, a chained exception, a package's submodule and an
error inside provider code. The per-file log lines must match too.

And parse code that walks ``sys.modules`` must not pay for the forker's thousands of modules:
``inspect.stack()`` maps every module's file on first use unless the forker filled that map
before it froze its heap.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagfiles import STACK_PROBE, write
from zygote_harness import ParseDriver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

HELPERS = {
    "zp_raises.py": "def explode():\n    raise RuntimeError('boom in a helper')\n\n\nexplode()\n",
    "zp_outer.py": "import zp_raises\n",
    "zp_missing.py": "import zp_not_installed_either\n",
    "zp_syntax.py": "VALUE = (\n",
    "zp_names.py": "PRESENT = 1\n",
    "zp_chained.py": "try:\n    {}['key']\nexcept KeyError as exc:\n    raise ValueError('while reading') from exc\n",
    "zp_importlib_outer.py": "import importlib\n\nimportlib.import_module('zp_outer')\n",
    "zp_pkg/__init__.py": "",
    "zp_pkg/sub.py": "raise LookupError('boom in a submodule')\n",
}
HEAD = "# airflow DAG\n"
SHAPES = {
    "in_dag_file": (HEAD + "raise ValueError('boom in the DAG file')\n", "boom in the DAG file"),
    "imported_module": (HEAD + "import zp_raises\n", "boom in a helper"),
    "nested_imports": (HEAD + "import zp_outer\n", "boom in a helper"),
    "module_not_found": (HEAD + "import zp_not_installed\n", "No module named 'zp_not_installed'"),
    "nested_not_found": (HEAD + "import zp_missing\n", "No module named 'zp_not_installed_either'"),
    "importlib_raises": (HEAD + "import importlib\nimportlib.import_module('zp_raises')\n", "boom in a helper"),
    "importlib_nested": (HEAD + "import importlib\nimportlib.import_module('zp_outer')\n", "boom in a helper"),
    "importlib_twice": (HEAD + "import zp_importlib_outer\n", "boom in a helper"),
    "importlib_not_found": (HEAD + "import importlib\nimportlib.import_module('zp_absent')\n", "zp_absent"),
    "importlib_syntax": (HEAD + "import importlib\nimportlib.import_module('zp_syntax')\n", "SyntaxError"),
    "helper_syntax": (HEAD + "import zp_syntax\n", "SyntaxError"),
    "missing_name": (HEAD + "from zp_names import ABSENT\n", "cannot import name 'ABSENT'"),
    "chained": (HEAD + "import zp_chained\n", "while reading"),
    "package_submodule": (HEAD + "import zp_pkg.sub\n", "boom in a submodule"),
    "provider_code": (
        HEAD + "from airflow.providers.standard.operators.bash import BashOperator\n"
        "BashOperator(task_id='no_command')\n",
        "bash_command",
    ),
}


@pytest.fixture
def deep_tracebacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole tracebacks on both sides: set before the session (``connection``) snapshots the environment."""
    monkeypatch.setenv("AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACK_DEPTH", "100")


@pytest.fixture
def helpers(dags: Path) -> Iterator[Path]:
    for name, text in HELPERS.items():
        (dags / name).parent.mkdir(exist_ok=True)
        write(dags, name, text)  # the DAG folder is on sys.path in workers and stock children alike
    yield dags


def test_every_shape_of_import_error_reads_as_in_stock(
    deep_tracebacks: None, helpers: Path, driver: ParseDriver, connection: Any
) -> None:
    differing = {}
    paths = {shape: write(helpers, f"{shape}.py", text) for shape, (text, _) in SHAPES.items()}
    started = {  # all at once: the driver's selector services every parse while it waits for one
        shape: (driver.start_stock(path, helpers), driver.start_zygote(connection, path, helpers))
        for shape, path in paths.items()
    }
    for shape, (stock_proc, zygote_proc) in started.items():
        expected = SHAPES[shape][1]
        stock, ours = driver.finish(stock_proc, timeout=120), driver.finish(zygote_proc, timeout=120)
        [stock_text] = stock.result.import_errors.values()
        assert expected in stock_text, (shape, stock_text)
        assert "loader.exec_module(new_module)" in stock_text, f"{shape}: not the whole traceback: {stock_text}"
        if ours.result.import_errors != stock.result.import_errors:
            differing[shape] = (stock_text, ours.result.import_errors)
        ours_lines, stock_lines = _lines(ours.log_text), _lines(stock.log_text)
        assert ours_lines == stock_lines, (shape, _first_difference(ours_lines, stock_lines))
    assert not differing, differing


def _first_difference(ours: list[dict[str, Any]], stock: list[dict[str, Any]]) -> str:
    """The first differing log line of each side, whole (pytest truncates the comparison)."""
    for index, (mine, theirs) in enumerate(zip(ours, stock, strict=False)):
        if mine != theirs:
            keys = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
            return f"line {index}, keys {keys}:\nzygote: {json.dumps(mine)}\nstock:  {json.dumps(theirs)}"
    return f"{len(ours)} lines against stock's {len(stock)}"


def _lines(log_text: str) -> list[dict[str, Any]]:
    """Per-file log lines without their timestamps."""
    return [{k: v for k, v in json.loads(line).items() if k != "timestamp"} for line in log_text.splitlines()]


def test_inspect_module_map_comes_filled_from_the_forker(dags: Path, driver: ParseDriver, connection: Any) -> None:
    path = write(dags, "stack_probe.py", STACK_PROBE)
    driver.finish(driver.start_stock(path, dags))
    driver.finish(driver.start_zygote(connection, path, dags))
    stock, ours = (json.loads(line) for line in path.with_suffix(".jsonl").read_text().splitlines())
    print({"stock": stock, "zygote": ours})
    assert ours["mapped"] >= 0.9 * ours["files"], ours
