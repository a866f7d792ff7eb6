"""What a worker cannot take from the dag-processor, so both sides must already agree on it.

A worker gets the dag-processor's environment and effective configuration (``hello.process``), so
an option read *during* a parse resolves as in a stock child whatever the zygote's own config
says. What the forker consumed while importing Airflow cannot change after the fork: module-level
constants (``[email] default_email_on_failure``, ``[operators] default_owner``), the logging and
secrets set-up, the installed distributions, the plugins and the cluster policies of
``airflow_local_settings``. Those form the compatibility map the handshake compares (SPEC.md 4).

:data:`IMPORT_TIME_OPTIONS` is not kept by hand: ``tests/parity/test_import_time_options.py``
records every option Airflow reads while the forker starts and while library modules are imported
during a broad parse corpus, and fails when one is neither here nor in :data:`EXEMPT`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

IMPORT_TIME_OPTIONS = (
    "api.client_ssl_cert",
    "api.client_ssl_key",
    "api.client_use_public_certs",
    "api.grid_view_sorting_order",
    "api.ssl_ca_file",
    "api.ssl_cert",
    "atlas.password",
    "aws.session_factory",
    "core.asset_manager_class",
    "core.asset_manager_kwargs",
    "core.compress_serialized_dags",
    "core.daemon_umask",
    "core.dag_discovery_safe_mode",
    "core.dag_ignore_file_syntax",
    "core.dags_are_paused_at_creation",
    "core.dbapihook_resolve_target_fields",
    "core.dags_folder",
    "core.default_task_execution_timeout",
    "core.default_task_retries",
    "core.default_task_retry_delay",
    "core.default_task_weight_rule",
    "core.default_timezone",
    "core.executor",
    "core.hide_sensitive_var_conn_fields",
    "core.killed_task_cleanup_time",
    "core.lazy_discover_providers",
    "core.lazy_load_plugins",
    "core.max_task_retry_delay",
    "core.sensitive_var_conn_names",
    "core.task_success_overtime",
    "core.team_name_cache_ttl",
    "core.unit_test_mode",
    "core.xcom_backend",
    "dag_processor.dag_bundle_storage_path",
    "email.default_email_on_failure",
    "email.default_email_on_retry",
    "logging.callsite_parameters",
    "logging.celery_logging_level",
    "logging.colored_console_log",
    "logging.extra_logger_names",
    "logging.fab_logging_level",
    "logging.file_task_handler_new_folder_permissions",
    "logging.gunicorn_logging_level",
    "logging.interleave_timestamp_parser",
    "logging.json_logs",
    "logging.log_filename_template",
    "logging.log_format",
    "logging.log_formatter_class",
    "logging.log_timestamp_format",
    "logging.logging_config_class",
    "logging.logging_level",
    "logging.min_length_masked_secret",
    "logging.namespace_levels",
    "logging.remote_logging",
    "logging.remote_task_handler_kwargs",
    "logging.secret_mask_adapter",
    "logging.simple_log_format",
    "logging.task_log_reader",
    "logging.uvicorn_logging_level",
    "metrics.legacy_names_on",
    "metrics.otel_on",
    "metrics.statsd_datadog_enabled",
    "metrics.statsd_on",
    "opensearch.password",
    "operators.default_deferrable",
    "operators.default_owner",
    "operators.default_queue",
    "secrets.backend",
    "secrets.backend_kwargs",
    "secrets.use_cache",
    "sentry.sentry_dsn",
    "sentry.sentry_on",
    "traces.otel_on",
    "webserver.analytical_tool",
    "workers.execution_api_retries",
    "workers.execution_api_retry_wait_max",
    "workers.execution_api_retry_wait_min",
    "workers.execution_api_timeout",
    "workers.max_failed_heartbeats",
    "workers.min_heartbeat_interval",
    "workers.secrets_backend_kwargs",
    "workers.socket_cleanup_timeout",
)
"""``section.option`` read while the forker starts or while a library module body runs."""

READ_WITH_PROVIDER = {
    "aws.session_factory": "apache-airflow-providers-amazon",  # base_aws.py resolves SessionFactory at import
    "core.killed_task_cleanup_time": "apache-airflow-providers-google",  # its operators import process_utils
}
"""Options of :data:`IMPORT_TIME_OPTIONS` read at import only when this distribution is installed."""

EXEMPT = {
    "zygote.*": "each side's own [zygote] settings",
    "database.*": "metadata-DB settings: denylisted, the zygote has no DB access and a parse never uses it",
    "debug.sqlalchemy_stats": "metadata-DB engine instrumentation, as [database]",
    "core.sql_alchemy_conn": "deprecated name of [database] sql_alchemy_conn",
    "core.fernet_key": "denylisted: Variables and Connections are decrypted by the dag-processor",
    "api.secret_key": "denylisted signing key; a parse signs nothing",
    "webserver.secret_key": "deprecated name of [api] secret_key",
    "api_auth.jwt_secret": "denylisted signing key; a parse signs nothing",
    "core.airflow_home": "where each container keeps its files; what it locates is compared on its own",
    "core.plugins_folder": "per-container path; the folder's contents are compared (plugins_folder)",
    "logging.base_log_folder": "per-container path of the zygote's own log files; worker logs are relayed",
    "logging.dag_processor_log_target": "the dag-processor manager's own log, not a worker's",
    "logging.dag_processor_log_format": "the dag-processor manager's own log, not a worker's",
    "dag_processor.refresh_interval": "manager scheduling, set on the dag-processor only; no parse reads it",
    "dag_processor.file_parsing_sort_mode": "manager scheduling, set on the dag-processor only; no parse reads it",
    "scheduler.max_dagruns_per_loop_to_schedule": "scheduler loop tuning; no parse reads it",
    "scheduler.max_dagruns_to_create_per_loop": "scheduler loop tuning; no parse reads it",
    "scheduler.use_row_level_locking": "scheduler DB locking; no parse reads it",
    "scheduler.task_instance_heartbeat_timeout": "scheduler task supervision; no parse reads it",
}
"""Options read at import time that need not (or cannot) be equal, each with the reason."""

PROVIDER_PREFIXES = ("apache-airflow-providers-", "apache-airflow-task-sdk", "apache-airflow-core")


def compatibility_map() -> dict[str, str]:
    """This process's side of the handshake's ``config`` map (SPEC.md 4, step 2)."""
    from airflow.configuration import conf

    found = {f"option:{name}": _option_value(conf, name) for name in IMPORT_TIME_OPTIONS}
    found.update({f"provider:{name}": version for name, version in providers().items()})
    found["plugins_folder"] = folder_digest(conf.get("core", "plugins_folder", fallback=""))
    found["airflow_local_settings"] = local_settings_digest()
    return found


def _option_value(conf: Any, name: str) -> str:
    """The value as this process resolves it; a sensitive one only as a digest (it crosses the wire)."""
    section, option = name.split(".", 1)
    value = str(conf.get(section, option, fallback=""))
    if (section, option) in conf.sensitive_config_values and value:
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]
    return value


def providers() -> dict[str, str]:
    """Installed Airflow distributions (providers, core, task SDK) and their versions.

    Read from the ``*.dist-info`` directory names on ``sys.path`` (first one wins, as for imports):
    ``importlib.metadata.distributions()`` parses every distribution's metadata, ~0.3 s on a
    loaded machine, and the client builds this once per session on the dag-processor's loop.
    """
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for dirname in names:
            stem, dot, kind = dirname.rpartition(".")
            name, _, version = stem.rpartition("-")
            name = name.lower().replace("_", "-")
            if dot and kind in ("dist-info", "egg-info") and name.startswith(PROVIDER_PREFIXES):
                found.setdefault(name, version)
    return dict(sorted(found.items()))


def folder_digest(folder: str) -> str:
    """``<n> files, sha256:<digest>`` of the names and contents under ``folder`` (bytecode caches left out)."""
    root = Path(folder)
    if not folder or not root.is_dir():
        return "absent"
    digest = hashlib.sha256()
    files = sorted(path for path in root.rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    for path in files:
        digest.update(str(path.relative_to(root)).encode(errors="surrogateescape") + b"\0")
        digest.update(_file_digest(path) + b"\0")
    return f"{len(files)} files, sha256:{digest.hexdigest()[:16]}"


def local_settings_digest() -> str:
    """Digest of the ``airflow_local_settings`` module Airflow imports (cluster policies), or ``absent``."""
    try:
        spec = importlib.util.find_spec("airflow_local_settings")
    except (ImportError, ValueError):
        return "absent"
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        return "absent"
    return "sha256:" + _file_digest(Path(spec.origin)).hex()[:16]


def _file_digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        digest.update(f"unreadable: {exc.strerror}".encode())
    return digest.digest()
