"""Record which Airflow options the forker consumes at import time (run as a script, prints JSON).

Every read goes through ``AirflowConfigParser.get`` (``getboolean``, ``getint``, ... call it) or
``getsection`` of Airflow's parser or the Task SDK's copy; each parser class is patched the moment its module is executed, before Airflow
reads anything. Two phases, as in a real zygote:

- ``forker``: everything read while the forker starts (``load_settings``, ``import_parse_path``).
  Those values stay in the forker's heap for the whole generation.
- ``worker``: a forked child parses a corpus of DAG files with Airflow's parser. A read made while
  the body of a library module runs (its nearest ``<module>`` frame is not a DAG file) is an
  import-time read: once the forker preloads that module, its value is frozen too. Every other
  read happens per parse, in the worker, after the worker installed the dag-processor's environment.

Usage: ``python record_reads.py DAG_FOLDER OUTPUT_JSON``
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

PARSER_MODULES = frozenset({"airflow._shared.configuration.parser", "airflow.sdk._shared.configuration.parser"})
"""Airflow's configuration parser and the Task SDK's copy of it (``airflow.sdk.configuration.conf``)."""
reads: dict[str, set[str]] = {"forker": set(), "worker_import": set(), "worker_parse": set()}
phase = ["forker"]
dag_folder = [""]


def _record(section: str, key: str) -> None:
    name = f"{section.lower()}.{key.lower()}"
    if phase[0] == "forker":
        reads["forker"].add(name)
    elif _in_library_module_body(sys._getframe(2)):
        reads["worker_import"].add(name)
    else:
        reads["worker_parse"].add(name)


def _in_library_module_body(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "<module>":
            filename = frame.f_code.co_filename
            return filename != __file__ and not filename.startswith(dag_folder[0])
        frame = frame.f_back
    return False


def _patch(module: ModuleType) -> None:
    parser = module.AirflowConfigParser
    original_get, original_getsection = parser.get, parser.getsection

    def get(self: Any, section: str, key: str, *args: Any, **kwargs: Any) -> Any:
        _record(section, key)
        return original_get(self, section, key, *args, **kwargs)

    def getsection(self: Any, section: str, *args: Any, **kwargs: Any) -> Any:
        _record(section, "*")
        return original_getsection(self, section, *args, **kwargs)

    parser.get, parser.getsection = get, getsection


class _PatchOnLoad(importlib.abc.MetaPathFinder):
    """Patch the parser class right after its module body ran, before anyone calls it."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in PARSER_MODULES:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        sys.meta_path.insert(0, self)
        assert spec is not None and spec.loader is not None
        exec_module = spec.loader.exec_module

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


def _parse_corpus(folder: Path) -> None:
    import structlog
    from airflow.dag_processing.processor import DagFileParseRequest, _parse_file

    for path in sorted(folder.rglob("*.py")):
        request = DagFileParseRequest(file=str(path), bundle_path=folder, bundle_name="dags-folder")
        result = _parse_file(request, structlog.get_logger("recorder"))
        if result is not None:
            result.model_dump_json()


def main() -> None:
    folder, output = Path(sys.argv[1]), Path(sys.argv[2])
    dag_folder[0] = str(folder)
    sys.meta_path.insert(0, _PatchOnLoad())
    from zygote.config import load_settings
    from zygote.forker.warmup import import_parse_path

    load_settings()
    import_parse_path()
    pid = os.fork()
    if pid == 0:
        try:
            phase[0] = "worker"
            sys.path.insert(0, str(folder))
            _parse_corpus(folder)
            output.write_text(json.dumps({key: sorted(value) for key, value in reads.items()}))
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status != 0 or not output.exists():
        raise SystemExit(f"the worker-like child failed (status {status})")


if __name__ == "__main__":
    main()
