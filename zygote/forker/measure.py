"""Worker-side measurements: which modules a parse imported and how long each took, GC time.

The timer is a ``sys.meta_path`` finder placed first. It asks the other finders exactly as the
import system would and returns their spec unchanged, only replacing ``exec_module`` on the
loader *instance* with a timed call, so ``isinstance`` checks on loaders still hold.

No zygote frame may show in a traceback a parse produces (Airflow keeps the last frames of an
import error). CPython trims a contiguous run of importlib frames from an import's traceback
(``remove_importlib_frames``) by their code's file name. So the timed call is compiled under
importlib's own frozen file name and called through ``functools.partial`` (no Python frame): it
joins importlib's run and is trimmed with it, and tracebacks come out as in a stock child.
"""

from __future__ import annotations

import functools
import gc
import sys
import time
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

_TIMED_EXEC_MODULE = """
def exec_module(exec_module, seconds, clock, module):
    start = clock()
    try:
        exec_module(module)
    except BaseException as exc:
        exc.__traceback__ = exc.__traceback__.tb_next
        raise
    finally:
        seconds[module.__name__] = clock() - start
"""
_IMPORTLIB_FILENAME = "<frozen importlib._bootstrap_external>"


def _compile_timed_exec_module() -> Callable[..., None]:
    namespace: dict[str, Any] = {}
    exec(compile(_TIMED_EXEC_MODULE, _IMPORTLIB_FILENAME, "exec"), namespace)
    timed: Callable[..., None] = namespace["exec_module"]
    return timed


_timed_exec_module = _compile_timed_exec_module()


class ImportTimer:
    """Inclusive import time per module (nested imports count toward their importer)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def install(self) -> None:
        sys.meta_path.insert(0, self)

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec: ModuleSpec | None = find(name, path, target)
            if spec is not None:
                self._wrap(spec.loader)
                return spec
        return None

    def _wrap(self, loader: Any) -> None:
        if loader is None or isinstance(loader, type) or getattr(loader, "_zygote_timed", False):
            return
        exec_module: Callable[[ModuleType], None] | None = getattr(loader, "exec_module", None)
        if exec_module is None:
            return
        timed = functools.partial(_timed_exec_module, exec_module, self.seconds, time.perf_counter)
        try:
            loader.exec_module = timed
            loader._zygote_timed = True
        except (AttributeError, TypeError):
            return


class GcTimer:
    """Time spent in garbage collection, via ``gc.callbacks``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.gen2_seconds = 0.0
        self.collections = 0
        self._started = 0.0

    def install(self) -> None:
        gc.callbacks.append(self)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        elapsed = time.perf_counter() - self._started
        self.seconds += elapsed
        self.collections += 1
        if info.get("generation") == 2:
            self.gen2_seconds += elapsed

    def as_dict(self) -> dict[str, float]:
        return {"s": self.seconds, "gen2_s": self.gen2_seconds, "collections": float(self.collections)}
