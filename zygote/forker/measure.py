"""Worker-side measurements: which modules a parse imported and how long each took, GC time.

What a parse imported is read from the end of ``sys.modules`` (:class:`ModuleBaseline`): a pass
over every module would write each module object's reference count, and a worker that writes
the forker's pages copies them (measured: 55 ms and thousands of pages a parse at 5,500 modules).

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


MUTATION_RETRIES = 3
"""Walks of ``sys.modules`` tried while a thread of the parse imports (the dict changes under them)."""


class ModuleBaseline:
    """``sys.modules`` when the forker froze its heap, by identity.

    ``sys.modules`` is a dict: its entries keep their insertion order and new ones are appended.
    So what was imported since is everything after the last entry that still holds its original
    module, found by walking back from the end: the modules the baseline holds are never touched.
    A module replaced in place keeps its position and is reported only if it is among the last.
    """

    def __init__(self, modules: dict[str, ModuleType] | None = None) -> None:
        # The module objects themselves: one removed from sys.modules stays alive here, so a new
        # module can never take its address and pass for it.
        self._modules = dict(sys.modules if modules is None else modules)

    def imported_since(self) -> list[tuple[str, ModuleType]]:
        """Modules added to ``sys.modules`` after the baseline, newest first."""
        for _ in range(MUTATION_RETRIES):
            try:
                return self._walk_back()
            except RuntimeError:  # "dictionary changed size during iteration": a thread imported
                continue
        return []

    def _walk_back(self) -> list[tuple[str, ModuleType]]:
        modules = sys.modules
        found = []
        for name in reversed(modules):
            module = modules.get(name)
            if module is None:  # removed meanwhile, or a failed import's placeholder
                continue
            if self._modules.get(name) is module:
                break
            found.append((name, module))
        return found


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
