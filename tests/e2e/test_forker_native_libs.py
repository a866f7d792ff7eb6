"""Thread-starting native libraries made fork-safe the way BLAS is: pyarrow (jemalloc) and pandas.

pyarrow's bundled jemalloc starts a background thread at import unless told otherwise; the
forker sets ``JE_ARROW_MALLOC_CONF=background_thread:false`` (an operator's value wins), so the
probe passes pyarrow and pandas and the forker preloads them. A library that still starts a thread
is still rejected.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from preload_support import connected, dags_folder, importing_dag, parse, wait_for_state, zygote_env
from zygote_harness import ParseDriver, ZygoteProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow is not installed"),
]


@pytest.fixture
def zygote(tmp_path: Path, migrated_db: Path) -> Iterator[ZygoteProcess]:
    process = ZygoteProcess.start(zygote_env(approved_modules="pyarrow,pandas,zt_thread"), tmp_path / "zygote.log")
    yield process
    process.stop()


def test_pyarrow_and_pandas_are_preloaded_and_a_thread_starter_is_not(
    zygote: ZygoteProcess, driver: ParseDriver
) -> None:
    path = importing_dag(dags_folder("forker-native"), "native_libs", "pyarrow", "pandas", "zt_thread")
    with connected(zygote) as connection:
        parsed = parse(driver, connection, path)
        assert parsed.dag_ids == ["native_libs"] and parsed.import_errors == {}
        assert wait_for_state(zygote, "pyarrow", {"loaded", "rejected"}, timeout=120)["state"] == "loaded"
        assert wait_for_state(zygote, "pandas", {"loaded", "rejected"}, timeout=120)["state"] == "loaded"
        thread = wait_for_state(zygote, "zt_thread", {"loaded", "rejected"}, timeout=120)
        assert thread["state"] == "rejected" and "thread" in thread["reason"]
        again = parse(driver, connection, path)
        assert again.dag_ids == ["native_libs"]
    assert "pyarrow" not in again.imports and "pandas" not in again.imports  # the worker had them already
    assert zygote.status()["forker"]["threads"] == 1
