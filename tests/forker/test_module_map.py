"""inspect's module map, filled in the forker: the same answers as stock, without walking sys.modules.

Each case runs in a fresh interpreter: the map is process-wide state, and the fill freezes the heap.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

STACK_IN_AN_IMPORT = """
import inspect, json, sys
def describe():
    stack = inspect.stack()
    modules = [getattr(inspect.getmodule(info.frame), "__name__", None) for info in stack]
    return [[info.filename, info.lineno, info.function, info.code_context, info.index] for info in stack], modules
RESULT = describe()
"""

SCRIPT = """
import json, sys, types, inspect
sys.path.insert(0, sys.argv[2])
if sys.argv[1] == "filled":
    from zygote.forker.preload import freeze_heap
    freeze_heap()
import zt_stack_in_import
probe = types.ModuleType("zt_map_probe")
probe.__file__ = "/nonexistent/zt_map_probe.py"
sys.modules["zt_map_probe"] = probe
code = compile("import inspect, sys; FRAME = sys._getframe()", "<frozen importlib._bootstrap>", "exec")
namespace = {}
exec(code, namespace)
answer = inspect.getmodule(namespace["FRAME"], "<frozen importlib._bootstrap>")
print(json.dumps({
    "stack": zt_stack_in_import.RESULT,
    "frozen_frame_module": getattr(answer, "__name__", None),
    "walked": "zt_map_probe" in inspect._filesbymodname,
}))
"""


def _run(mode: str, folder: Path) -> dict[str, Any]:
    (folder / "zt_stack_in_import.py").write_text(textwrap.dedent(STACK_IN_AN_IMPORT))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode, str(folder)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_filled_map_answers_as_stock_without_walking_sys_modules(tmp_path: Path) -> None:
    stock, filled = _run("stock", tmp_path), _run("filled", tmp_path)
    frames, modules = filled["stack"]
    assert any(frame[0] == "<frozen importlib._bootstrap>" for frame in frames), "no frozen frame was tested"
    assert filled["stack"] == stock["stack"], "inspect.stack() and getmodule() differ from stock"
    assert "zt_stack_in_import" in modules
    assert stock["frozen_frame_module"] is None and filled["frozen_frame_module"] is None
    assert stock["walked"], "stock walks sys.modules for a frozen frame (the case under test)"
    assert not filled["walked"], "the filled map answered a frozen frame by walking sys.modules"
