"""Worker-side measurements: which modules a parse imported and how long each took, GC time.

The timer is a ``sys.meta_path`` finder placed first. It asks the other finders exactly as the
import system would and returns their spec unchanged, only replacing ``exec_module`` on the
loader *instance* with a timed call, so ``isinstance`` checks on loaders still hold.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any


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
        seconds = self.seconds

        def timed_exec_module(module: ModuleType) -> None:
            start = time.perf_counter()
            try:
                exec_module(module)
            finally:
                seconds[module.__name__] = time.perf_counter() - start

        try:
            loader.exec_module = timed_exec_module
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
