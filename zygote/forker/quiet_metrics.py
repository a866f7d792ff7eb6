"""Airflow's ``Stats`` stays unused in the forker, as configured for its workers.

Why: with ``[metrics] otel_on``, importing Airflow already emits a metric (``airflow.sdk.serde``
times its serializer registration), so the task SDK's copy of ``Stats`` builds its backend: an
OpenTelemetry ``MeterProvider`` whose ``PeriodicExportingMetricReader`` owns a thread. A forker
with two threads refuses every fork. The forker itself has nothing to report, so after its imports
the provider is shut down, its thread is waited for, and both copies of ``Stats`` (Airflow core's
and the task SDK's) get a backend that sends nothing.

What a worker sees is what a stock parse child sees: the same ``Stats`` factory (the forker set it
as the manager does, ``warmup.import_parse_path``), no backend yet (Airflow's own at-fork hook
resets it in every child), so the first metric a parse emits builds a fresh backend from the
configuration, in the worker. Stock children additionally restart their manager's exporter thread
and export the manager's own figures again; the forker's provider is unset (also from the API's
proxy, which kept it) and collected at once, so the reader's at-fork hook, which holds it weakly,
finds nothing and workers start no such thread. The attributes reset here are OpenTelemetry's
private globals, as Airflow's own ``get_otel_logger`` resets them after a fork.
"""

from __future__ import annotations

import atexit
import gc
import sys
import threading
import time
from typing import Any

from zygote import linux
from zygote.logs import get_logger

log = get_logger(__name__)

STATS_MODULES = ("airflow._shared.observability.metrics.stats", "airflow.sdk._shared.observability.metrics.stats")
OTEL_LOGGER_MODULES = (
    "airflow._shared.observability.metrics.otel_logger",
    "airflow.sdk._shared.observability.metrics.otel_logger",
)
"""Each registers an exit-time flush of the global provider, which would fail once it is unset."""
SHUTDOWN_TIMEOUT_S = 2.0
"""What the provider's final export may take: the collector may be down; the forker does not wait for it."""
THREAD_EXIT_TIMEOUT_S = 10.0
"""An exporter aborts its retries once shut down, so its thread ends in well under this."""


def silence_metrics() -> None:
    """Shut down what Airflow's metrics started in this process; leave the factory for the workers."""
    from airflow._shared.observability.metrics.base_stats_logger import NoStatsLogger

    for name in STATS_MODULES:
        module: Any = sys.modules.get(name)
        if module is not None:
            module._backend = NoStatsLogger()  # reset to None in every child by Airflow's at-fork hook
    provider = drop_meter_provider()
    if provider is not None:
        provider.shutdown(timeout_millis=SHUTDOWN_TIMEOUT_S * 1000)
        _wait_for_other_threads(THREAD_EXIT_TIMEOUT_S)
        _unregister_exit_flush()
        del provider
        gc.collect()  # the reader's at-fork hook holds it weakly: collected, no child restarts its thread
        log.info("forker.metrics_silenced", threads=linux.native_thread_count())


def _unregister_exit_flush() -> None:
    for name in OTEL_LOGGER_MODULES:
        module: Any = sys.modules.get(name)
        if module is not None:
            atexit.unregister(module.flush_otel_metrics)


def drop_meter_provider() -> Any:
    """The OpenTelemetry SDK's global provider, unset (as Airflow's ``get_otel_logger`` resets it)."""
    internal: Any = sys.modules.get("opentelemetry.metrics._internal")
    if internal is None or not hasattr(internal, "_METER_PROVIDER"):
        return None
    provider = internal._METER_PROVIDER
    internal._METER_PROVIDER = None
    internal._METER_PROVIDER_SET_ONCE._done = False
    proxy = getattr(internal, "_PROXY_METER_PROVIDER", None)
    if proxy is not None and getattr(proxy, "_real_meter_provider", None) is provider:
        proxy._real_meter_provider = None  # the proxy kept the provider (and its reader) alive
    return provider if hasattr(provider, "shutdown") else None


def _wait_for_other_threads(timeout_s: float) -> None:
    """Join every Python thread but this one, then wait until the kernel counts one thread.

    A joined thread's native thread can outlive ``join()`` by a moment; the fork-safety check counts
    native threads (``/proc/self/task``), so this waits for that count, bounded: what remains is
    refused by that check with a clear error, never forked over.
    """
    deadline = time.monotonic() + timeout_s
    dummy = getattr(threading, "_DummyThread", ())  # a thread Python did not start cannot be joined
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not isinstance(thread, dummy):
            thread.join(max(0.0, deadline - time.monotonic()))
    while linux.native_thread_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
