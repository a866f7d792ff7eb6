"""The import timer leaves tracebacks as a stock child has them (Airflow keeps their last frames)."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from zygote.forker.measure import ImportTimer

MODULES = {
    "zt_tb_raises.py": "def f():\n    raise RuntimeError('boom in an imported module')\n\n\nf()\n",
    "zt_tb_outer.py": "import zt_tb_raises\n",
    "zt_tb_missing.py": "import zt_tb_does_not_exist\n",
    "zt_tb_syntax.py": "this is not python(\n",
}
DAG_FILES = {
    "imported_raises": "import zt_tb_raises\n",
    "nested_raises": "x = 1\nimport zt_tb_outer\n",
    "from_import_raises": "from zt_tb_outer import nothing\n",
    "not_found": "import zt_tb_does_not_exist\n",
    "nested_not_found": "import zt_tb_missing\n",
    "syntax_in_import": "import zt_tb_syntax\n",
    "provider_style": "from airflow.providers.standard.operators.bash import BashOperator\nBashOperator()\n",
}


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    for name, text in MODULES.items():
        (tmp_path / name).write_text(text)
    for name, text in DAG_FILES.items():
        (tmp_path / f"{name}.py").write_text(text)
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))


def _tracebacks(folder: Path) -> dict[str, str]:
    texts = {}
    for name in DAG_FILES:
        for module in [m for m in sys.modules if m.startswith("zt_tb_")]:
            del sys.modules[module]
        spec = importlib.util.spec_from_file_location(f"unusual_prefix_{name}", folder / f"{name}.py")
        assert spec is not None and spec.loader is not None
        try:
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
        except BaseException:
            texts[name] = traceback.format_exc()
    return texts


def test_tracebacks_are_identical_with_the_timer(folder: Path) -> None:
    stock = _tracebacks(folder)
    timer = ImportTimer()
    timer.install()
    try:
        timed = _tracebacks(folder)
    finally:
        sys.meta_path.remove(timer)
    assert set(stock) == set(DAG_FILES)
    assert timed == stock
    assert "zt_tb_outer" in timer.seconds and "zt_tb_raises" in timer.seconds  # it did time them
    assert "zygote/forker/measure" not in "".join(timed.values())
