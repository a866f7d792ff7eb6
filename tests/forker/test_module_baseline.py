"""What a parse imported, found from the end of ``sys.modules`` without touching the forker's modules."""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import types
from collections.abc import Iterator

import pytest

from zygote.forker.measure import ModuleBaseline


@pytest.fixture
def scratch() -> Iterator[list[str]]:
    """Names the test puts into ``sys.modules``; removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        sys.modules.pop(name, None)


def _add(names: list[str], name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    sys.modules[name] = module
    names.append(name)
    return module


def test_modules_added_since_are_reported_newest_first(scratch: list[str]) -> None:
    baseline = ModuleBaseline()
    assert baseline.imported_since() == []
    first, second = _add(scratch, "zt_mb_first"), _add(scratch, "zt_mb_second")
    assert baseline.imported_since() == [("zt_mb_second", second), ("zt_mb_first", first)]


def test_a_module_imported_again_counts_as_imported(scratch: list[str]) -> None:
    _add(scratch, "zt_mb_again")
    baseline = ModuleBaseline()
    del sys.modules["zt_mb_again"]
    again = _add(scratch, "zt_mb_again")
    later = _add(scratch, "zt_mb_later")
    assert baseline.imported_since() == [("zt_mb_later", later), ("zt_mb_again", again)]


def test_removed_and_blocked_entries_do_not_end_the_walk_early(scratch: list[str]) -> None:
    baseline = ModuleBaseline()
    kept = _add(scratch, "zt_mb_kept")
    sys.modules["zt_mb_blocked"] = None  # type: ignore[assignment]  # "import blocked", as importlib allows
    scratch.append("zt_mb_blocked")
    assert baseline.imported_since() == [("zt_mb_kept", kept)]


def test_a_forked_worker_finds_its_imports_without_copying_the_parents_pages() -> None:
    """The reason for the walk: a pass over every module writes each one's refcount (copy-on-write)."""
    for name in ("email.mime.multipart", "json.tool", "unittest.mock"):  # a full pass spans many pages
        importlib.import_module(name)

    baseline = ModuleBaseline()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        sys.modules["zt_mb_parsed"] = types.ModuleType("zt_mb_parsed")  # imported "by the parse"

        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        found = [name for name, _ in baseline.imported_since()]
        walk = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        every = [name for name, module in list(sys.modules.items()) if module is not None]
        full = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        os.write(write_end, json.dumps({"found": found, "walk": walk, "full": full, "n": len(every)}).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        result = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert result["found"] == ["zt_mb_parsed"], result
    assert result["full"] > 50, f"a full pass over {result['n']} modules should copy pages: {result}"
    assert result["walk"] * 5 < result["full"], result
