"""Fill, in the forker, the caches a first parse fills, so they live in the shared frozen heap.

How this works (ADR 0007): just before its start-up ``freeze_heap``, the forker defines the DAGs of
:data:`~zygote.forker.warmup.WARMUP_DAG` (a file shipped with this project) and serializes them
as a worker's parse does (``DagSerialization.to_dict``, ``DagFileParsingResult``, the comms frame).
That fills the serialization schema's validator and the schema-derived ``lru_cache``s, pydantic's
and msgspec's encoders, and the ``typing``/``re``/``urllib`` caches, all pure functions of code
that every worker shares. It does not go through ``DagBag``: that would run the deployment's
cluster policies (user code) in the forker and append the bundle path to ``sys.path``.

Then it undoes what a parse could observe: the module, its DAGs in the context stacks and in
auto-registration, its ``linecache`` lines, ``sys.path``. Caches whose content comes from user code
or from what the process imported (:data:`SESSION_CACHE_MODULES`, :data:`SESSION_CACHES`: the
plugins manager, ``_has_kubernetes``) must hold after the warm-up what they held before it, or
they are cleared. Warnings are ignored while it runs (an ``ignore``
action records nothing in any ``__warningregistry__``), so a worker warns as a stock child does.
Any failure is logged and start-up goes on without it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import linecache
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zygote.forker.preload import summary
from zygote.forker.warmup import WARMUP_DAG
from zygote.logs import get_logger

log = get_logger(__name__)

MODULE_NAME = "airflow_zygote_warm_caches_dag"
"""The warm-up DAG's module name while it runs; removed from ``sys.modules`` afterwards."""

SESSION_CACHE_MODULES = ("airflow.plugins_manager",)
"""Every cached function of these modules is filled from user code (plugins folder, entry points)."""

SESSION_CACHES = ("airflow.serialization.serialized_objects._has_kubernetes",)
"""Cached functions whose answer depends on what the process imported or may import."""


@dataclass
class WarmReport:
    """What the warm-up did, for the forker's log."""

    dags: int = 0
    seconds: float = 0.0
    new_modules: list[str] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)
    error: str = ""


def warm_parse_caches(dag_file: Path = WARMUP_DAG) -> WarmReport:
    """Serialize the DAGs of ``dag_file`` here, restore what a parse could see; never raises.

    A warning names anything unexpected: an error, a session cache it had to clear, or a module
    it imported (the probed preloads should already hold everything the warm-up imports).
    """
    report = WarmReport()
    start = time.monotonic()
    before_modules = frozenset(sys.modules)
    before_caches = _session_cache_sizes()
    before_lines = frozenset(linecache.cache)
    try:
        with _isolated(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report.dags = _serialize_all(_define_dags(dag_file), dag_file)
    except Exception as exc:
        report.error = summary(exc)
    for name in set(linecache.cache) - before_lines:  # the DAG file's lines, a traceback's
        linecache.cache.pop(name, None)
    report.reset = _reset_changed_caches(before_caches)
    report.new_modules = sorted(set(sys.modules) - before_modules)
    report.seconds = round(time.monotonic() - start, 3)
    event = log.warning if report.error or report.reset or report.new_modules else log.info
    event("forker.caches_warmed", **vars(report))
    return report


@contextmanager
def _isolated() -> Iterator[None]:
    """Whatever happens inside, leave what a parse could see of it as it was.

    ``sys.path``, the DAG and task-group context stacks (a failure inside a ``with DAG`` block
    must not leave the warm-up DAG current for a worker's tasks), auto-registered DAGs and the
    module itself.
    """
    from airflow.sdk.definitions._internal import contextmanager as contexts

    sys_path = list(sys.path)
    stacks = {stack: list(stack._context) for stack in (contexts.DagContext, contexts.TaskGroupContext)}
    current_context = list(contexts._CURRENT_CONTEXT)
    registered = set(contexts.DagContext.autoregistered_dags)
    module_name = contexts.DagContext.current_autoregister_module_name
    try:
        yield
    finally:
        sys.path[:] = sys_path
        for stack, saved in stacks.items():
            stack._context.clear()
            stack._context.extend(saved)
        contexts._CURRENT_CONTEXT[:] = current_context
        contexts.DagContext.autoregistered_dags.clear()
        contexts.DagContext.autoregistered_dags.update(registered)
        contexts.DagContext.current_autoregister_module_name = module_name
        sys.modules.pop(MODULE_NAME, None)


def _define_dags(dag_file: Path) -> list[Any]:
    """Run the warm-up DAG file as a module, collecting its DAGs as ``DagBag`` does (auto-register)."""
    from airflow.sdk.definitions._internal.contextmanager import DagContext

    spec = importlib.util.spec_from_file_location(MODULE_NAME, dag_file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {dag_file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    DagContext.current_autoregister_module_name = MODULE_NAME
    spec.loader.exec_module(module)
    return [dag for dag, mod in DagContext.autoregistered_dags if mod is module]


def _serialize_all(dags: list[Any], dag_file: Path) -> int:
    """Serialize as ``_parse_file`` does and encode the result as the worker's comms would."""
    from airflow.dag_processing.processor import DagFileParsingResult
    from airflow.sdk.execution_time.comms import _RequestFrame
    from airflow.serialization.serialized_objects import DagSerialization, LazyDeserializedDAG

    serialized = [LazyDeserializedDAG(data=DagSerialization.to_dict(dag), last_loaded=dag.last_loaded) for dag in dags]
    result = DagFileParsingResult(fileloc=str(dag_file), serialized_dags=serialized, import_errors={}, warnings=[])
    _RequestFrame(id=0, body=result.model_dump()).as_bytes()
    return len(serialized)


def _session_caches() -> dict[str, Any]:
    """The cached functions of :data:`SESSION_CACHE_MODULES` and :data:`SESSION_CACHES`, by name.

    They must hold after the warm-up what they held before it; a name this Airflow lacks is skipped.
    """
    candidates = {}
    for module_name in SESSION_CACHE_MODULES:
        module = sys.modules.get(module_name)
        for attr, value in vars(module).items() if module is not None else ():
            candidates[f"{module_name}.{attr}"] = value
    for dotted in SESSION_CACHES:
        module_name, _, attr = dotted.rpartition(".")
        candidates[dotted] = getattr(sys.modules.get(module_name), attr, None)
    # type(), not isinstance(): a lazy proxy among module attributes would import on __class__.
    return {name: value for name, value in candidates.items() if type(value) is functools._lru_cache_wrapper}


def _session_cache_sizes() -> dict[str, int]:
    return {name: cached.cache_info().currsize for name, cached in _session_caches().items()}


def _reset_changed_caches(before: dict[str, int]) -> list[str]:
    """Clear a session cache the warm-up filled (so a worker fills it from its own session)."""
    reset = []
    for name, cached in _session_caches().items():
        if cached.cache_info().currsize != before.get(name, 0):
            cached.cache_clear()
            reset.append(name)
    return reset
