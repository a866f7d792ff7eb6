"""Entry point of a forker generation, started by the gateway as a fresh interpreter.

Usage (by the gateway only): ``python -c 'from zygote.forker.main import main; main()'
--fd N --generation G``. The fd is this side of the gateway's socketpair.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

SINGLE_THREADED_NATIVE_POOLS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "GOTO_NUM_THREADS",
)
"""Native thread pools that numpy/pandas & co. start at import unless told to use one thread."""

NO_BACKGROUND_THREADS = {"JE_ARROW_MALLOC_CONF": "background_thread:false"}
"""Other native libraries real DAG files import, told not to start threads at import.

pyarrow's bundled jemalloc starts a purge thread at import (so the probe rejected pyarrow,
pandas and every Google client that imports them); with ``background_thread:false`` it purges on
allocation instead. Checked and left alone: ``grpc`` and the OpenTelemetry OTLP exporters start no
thread at import (only a channel or exporter does, which the probe rejects as it should), so
``GRPC_ENABLE_FORK_SUPPORT`` / ``GRPC_POLL_STRATEGY`` would change nothing the forker holds.
"""


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    _clean_sys_path()
    _single_threaded_native_pools()
    from zygote.config import load_settings
    from zygote.forker.loop import Forker
    from zygote.forker.warmup import import_parse_path
    from zygote.logs import configure_logging

    settings = load_settings()
    import_parse_path()
    configure_logging("forker", verbose=args.verbose)  # after Airflow configured its own logging
    link = socket.socket(fileno=args.fd)
    link.setblocking(True)
    forker = Forker(settings, link, args.generation)
    forker.prepare()
    forker.run()
    sys.stderr.flush()
    os._exit(0)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="zygote-forker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--generation", type=int, required=True)
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def _single_threaded_native_pools() -> None:
    """Without this, importing numpy starts OpenBLAS threads: the forker could never preload it.

    A parse does not need parallel BLAS; an operator who sets these variables keeps their value
    (and their threads, which then make the probe reject such modules).
    """
    for name in SINGLE_THREADED_NATIVE_POOLS:
        os.environ.setdefault(name, "1")
    for name, value in NO_BACKGROUND_THREADS.items():
        os.environ.setdefault(name, value)


def _clean_sys_path() -> None:
    """``python -c`` puts the cwd first on sys.path; a stock parse child does not have it."""
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
