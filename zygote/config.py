"""The ``[zygote]`` config section, declared once as data.

The table feeds the provider's ``config`` block (so ``airflow config list --section zygote`` and
``AIRFLOW__ZYGOTE__*`` work), the README and :func:`load_settings`, which is the only place the
rest of the code reads configuration from. Nothing is read at import time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

SECTION = "zygote"


@dataclass(frozen=True)
class Option:
    """One ``[zygote]`` option: what Airflow's provider config schema needs, plus our parser."""

    name: str
    type: Literal["string", "integer", "float", "boolean"]
    default: str
    example: str
    description: str
    sensitive: bool = False


OPTIONS: tuple[Option, ...] = (
    Option(
        "socket",
        "string",
        "ipc://{AIRFLOW_HOME}/zygote/zygote.sock",
        "ipc:///run/airflow-zygote/zygote.sock",
        "ZeroMQ endpoint the zygote binds and the dag-processor connects to. ``ipc://`` paths live in a "
        "directory the zygote creates owner-only; ``tcp://`` needs the CURVE keys below.",
    ),
    Option(
        "socket_group",
        "string",
        "",
        "airflow",
        "Group allowed to use an ``ipc://`` socket (directory mode 0750, socket 0660). Empty: owner only.",
    ),
    Option(
        "curve_server_public_key",
        "string",
        "",
        "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7",
        "Z85 CURVE public key of the zygote. Required for ``tcp://``; the client verifies it.",
    ),
    Option(
        "curve_server_secret_key",
        "string",
        "",
        "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6",
        "Z85 CURVE secret key of the zygote. Held by the gateway only.",
        sensitive=True,
    ),
    Option(
        "curve_client_public_key",
        "string",
        "",
        "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID",
        "Z85 CURVE public key of this client (dag-processor side) for ``tcp://``.",
    ),
    Option(
        "curve_client_secret_key",
        "string",
        "",
        "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs",
        "Z85 CURVE secret key of this client (dag-processor side) for ``tcp://``.",
        sensitive=True,
    ),
    Option(
        "curve_allowed_clients",
        "string",
        "",
        "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID",
        "Comma-separated Z85 public keys of the clients the zygote accepts over ``tcp://``.",
    ),
    Option("max_workers", "integer", "16", "8", "Parse workers running at once. Requests beyond it queue."),
    Option(
        "max_queued",
        "integer",
        "8",
        "32",
        "Requests that may wait for a worker while all ``max_workers`` run: a short queue, so a full zygote "
        "answers ``overloaded`` at once and the dag-processor parses the file itself instead of waiting.",
    ),
    Option(
        "warm_workers",
        "integer",
        "4",
        "4",
        "Workers the forker keeps pre-forked, waiting for a request (a warm pool): a request takes one "
        "instead of waiting for a fork, and the pool is refilled between requests. They do not count "
        "against ``max_workers`` until they take a request. 0: fork per request (ADR 0006).",
    ),
    Option(
        "worker_timeout",
        "float",
        "900",
        "300",
        "Zygote-side ceiling on a worker's wall time in seconds, whatever the client asked for.",
    ),
    Option(
        "worker_memory_limit",
        "integer",
        "0",
        "2048",
        "Kill a worker whose USS passes this many MiB (0: no limit).",
    ),
    Option("worker_cpu_limit", "integer", "0", "600", "RLIMIT_CPU of a worker in seconds (0: no limit)."),
    Option("worker_open_files", "integer", "0", "4096", "RLIMIT_NOFILE of a worker (0: inherit the forker's)."),
    Option(
        "worker_max_output",
        "integer",
        "16777216",
        "1048576",
        "Bytes of stdout plus stderr relayed per request; the excess is dropped after one marker line.",
    ),
    Option(
        "approved_modules",
        "string",
        "",
        "pandas, numpy, kubernetes.*, mycompany.*",
        "Modules the zygote may preload after a worker imported them successfully. Names or ``prefix.*`` "
        "patterns, comma or space separated. Airflow's own modules and installed providers are always "
        "approved.",
    ),
    Option(
        "preload_modules",
        "string",
        "",
        "pandas",
        "Approved modules imported eagerly at start (same verification as lazy preloads).",
    ),
    Option(
        "preload_state_file",
        "string",
        "",
        "/var/lib/airflow-zygote/preload.json",
        "Where the learned preload set is kept so a restarted zygote warms up at once. Empty: not kept.",
    ),
    Option(
        "probe_timeout",
        "float",
        "60",
        "30",
        "Seconds a preload candidate may take to import in its probe child.",
    ),
    Option(
        "probe_memory_limit",
        "integer",
        "1024",
        "512",
        "MiB a preload candidate may add to a process before it is rejected.",
    ),
    Option(
        "preload_interval",
        "float",
        "5.0",
        "10.0",
        "Seconds between promotion rounds: modules workers report meanwhile are probed together and "
        "promoted with one collect and freeze, so a cold pass is not slowed by a freeze per module.",
    ),
    Option(
        "preload_cost_per_mib",
        "float",
        "0.05",
        "0.2",
        "Milliseconds per parse that each MiB a preload adds to the forker is taken to cost (slower forks, "
        "more to fault in). A module is preloaded when the share of parses importing it times its import "
        "time is at least this times its size. 0: every verified module.",
    ),
    Option("heartbeat_interval", "float", "1.0", "2.0", "Seconds between heartbeats in both directions."),
    Option(
        "heartbeat_timeout",
        "float",
        "15.0",
        "30.0",
        "Seconds without traffic after which a peer is gone: the zygote kills a vanished client's "
        "workers, the client treats the zygote as unavailable.",
    ),
    Option(
        "connect_timeout",
        "float",
        "5.0",
        "10.0",
        "Seconds the client waits for the zygote's handshake answer.",
    ),
    Option(
        "drain_timeout",
        "float",
        "60.0",
        "120.0",
        "On SIGTERM, seconds in-flight parses may take before their workers are killed.",
    ),
    Option(
        "fallback",
        "string",
        "local",
        "fail",
        "When the zygote is unreachable: ``local`` parses with Airflow's own subprocess (a warning once "
        "per outage); ``fail`` fails the parse like a timed-out processor.",
    ),
    Option(
        "allowed_roots",
        "string",
        "",
        "/opt/airflow/dags, /opt/airflow/dag_bundles",
        "Directories whose files the zygote parses (after resolving symlinks). Empty: the DAG bundle "
        "roots and ``[dag_processor] dag_bundle_storage_path``.",
    ),
    Option("memory_sample_interval", "float", "0.1", "0.2", "Seconds between samples of each worker's USS/PSS."),
    Option(
        "spawn_timeout",
        "float",
        "5.0",
        "10.0",
        "Seconds a parse request may wait for the zygote to start its worker; after that the client "
        "parses the file itself (``fallback = local``) or retries it later (``fail``). The "
        "dag-processor's loop never waits for this: the request waits in the background.",
    ),
    Option(
        "warmup_timeout",
        "float",
        "120",
        "60",
        "Seconds the forker waits for its warm-up parse at start-up before killing it and starting "
        "without the modules it would have learned (a hanging cluster policy must not hang start-up).",
    ),
    Option(
        "warm_parse_caches",
        "boolean",
        "True",
        "False",
        "Serialize a DAG file shipped with the zygote in the forker before it freezes its heap, so "
        "the caches a first parse fills (serialization schema, lru caches) are shared by every "
        "worker instead of filled again in each (ADR 0007).",
    ),
)


def provider_config() -> dict[str, Any]:
    """Return the provider ``config`` block Airflow merges into its configuration."""
    options = {
        opt.name: {
            "description": opt.description,
            "version_added": "0.1.0",
            "type": opt.type,
            "example": opt.example,
            "default": opt.default,
            "sensitive": opt.sensitive,
        }
        for opt in OPTIONS
    }
    return {SECTION: {"description": "airflow-zygote: prefork parsing server.", "options": options}}


def split_list(value: str) -> tuple[str, ...]:
    """Split a comma or whitespace separated option value."""
    return tuple(item for item in re.split(r"[,\s]+", value.strip()) if item)


@dataclass(frozen=True)
class Settings:
    """Typed view of ``[zygote]``; built by :func:`load_settings`, or directly in tests."""

    socket: str
    socket_group: str = ""
    curve_server_public_key: str = ""
    curve_server_secret_key: str = ""
    curve_client_public_key: str = ""
    curve_client_secret_key: str = ""
    curve_allowed_clients: tuple[str, ...] = ()
    max_workers: int = 16
    max_queued: int = 8
    warm_workers: int = 4
    worker_timeout: float = 900.0
    worker_memory_limit: int = 0
    worker_cpu_limit: int = 0
    worker_open_files: int = 0
    worker_max_output: int = 16 * 1024 * 1024
    approved_modules: tuple[str, ...] = ()
    preload_modules: tuple[str, ...] = ()
    preload_state_file: str = ""
    probe_timeout: float = 60.0
    probe_memory_limit: int = 1024
    preload_interval: float = 5.0
    preload_cost_per_mib: float = 0.05
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 15.0
    connect_timeout: float = 5.0
    drain_timeout: float = 60.0
    fallback: str = "local"
    allowed_roots: tuple[str, ...] = field(default=())
    memory_sample_interval: float = 0.1
    spawn_timeout: float = 5.0
    warmup_timeout: float = 120.0
    warm_parse_caches: bool = True


_LIST_OPTIONS = frozenset({"curve_allowed_clients", "approved_modules", "preload_modules", "allowed_roots"})


def load_settings() -> Settings:
    """Read ``[zygote]`` from Airflow's configuration (files, ``AIRFLOW__ZYGOTE__*``, secrets)."""
    from airflow.configuration import conf

    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw = conf.get(SECTION, opt.name, fallback=opt.default)
        values[opt.name] = _convert(opt, "" if raw is None else str(raw))
    settings = Settings(**values)
    if settings.fallback not in ("local", "fail"):
        raise ValueError(f"[zygote] fallback must be 'local' or 'fail', not {settings.fallback!r}")
    return settings


def _convert(opt: Option, raw: str) -> Any:
    if opt.name in _LIST_OPTIONS:
        return split_list(raw)
    if opt.type == "integer":
        return int(raw)
    if opt.type == "float":
        return float(raw)
    if opt.type == "boolean":
        return raw.strip().lower() in ("1", "true", "yes", "on")
    return raw.strip()


def configured_roots(settings: Settings) -> tuple[str, ...]:
    """The roots as configured: ``allowed_roots``, or the DAG bundle roots and the bundle storage path."""
    if settings.allowed_roots:
        return settings.allowed_roots
    from airflow.configuration import conf

    roots = [
        conf.get("core", "dags_folder"),
        conf.get("dag_processor", "dag_bundle_storage_path", fallback=""),
    ]
    roots += _bundle_paths(conf.get("dag_processor", "dag_bundle_config_list", fallback="[]"))
    return tuple(root for root in roots if root)


def _bundle_paths(config_list: str) -> list[str]:
    try:
        bundles = json.loads(config_list or "[]")
    except ValueError:
        return []
    paths = []
    for bundle in bundles if isinstance(bundles, list) else []:
        kwargs = bundle.get("kwargs") if isinstance(bundle, dict) else None
        if isinstance(kwargs, dict) and isinstance(kwargs.get("path"), str):
            paths.append(kwargs["path"])
    return paths
