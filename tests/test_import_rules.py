"""The process boundary, checked at run time: the forker never loads zmq, the gateway never loads Airflow.

A libzmq context owns OS threads, and forking a threaded process can deadlock the child, so the
forker must not even import ``zmq``; the gateway is the lean long-lived process and must not pull
Airflow in. ``zygote/forker/ruff.toml`` and ``zygote/gateway/ruff.toml`` ban the imports statically;
these tests load the real modules in a fresh interpreter, which also catches indirect imports.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)

_LOADED_AFTER = """
import importlib, json, pkgutil, sys
import zygote.{package} as package
for info in pkgutil.iter_modules(package.__path__):
    if info.name not in {skip}:
        importlib.import_module(f"zygote.{package}." + info.name)
{then}
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after(package: str, *, skip: tuple[str, ...] = (), then: str = "") -> list[str]:
    code = _LOADED_AFTER.format(package=package, skip=repr(set(skip)), then=then)
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=90, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def _matching(modules: list[str], prefix: str) -> list[str]:
    return [name for name in modules if name == prefix or name.startswith(prefix + ".")]


def test_every_gateway_module_loads_without_airflow() -> None:
    modules = _modules_after("gateway")
    assert "zygote.gateway.loop" in modules, "the walk must have imported the gateway itself"
    assert _matching(modules, "airflow") == []


def test_the_forker_loads_airflow_parse_path_without_zmq() -> None:
    # warmup_dag is a DAG file, not a module of the forker; import_parse_path is what main() runs.
    then = "from zygote.forker.warmup import import_parse_path; import_parse_path()"
    modules = _modules_after("forker", skip=("warmup_dag",), then=then)
    assert "airflow.dag_processing.processor" in modules, "the parse path must have been imported"
    assert _matching(modules, "zmq") == []
    assert _matching(modules, "zygote.transport") == []
