"""What a stock parse child would inherit from its dag-processor, as ``hello.process`` (SPEC.md 4a).

A stock child is a fork of the dag-processor: it has that process's ``os.environ``, ``sys.path`` and
configuration. A zygote worker is a fork of the forker, in another container, so the client sends
those once per session and the worker installs them after its fork.

The environment alone is not the configuration: the dag-processor also reads its own
``airflow.cfg``, runs ``_cmd`` commands and asks the secrets backend for ``_secret`` options, none of
which the zygote can see. So every option the client resolves is folded into the environment as
``AIRFLOW__<SECTION>__<OPTION>`` with its resolved value (environment variables win over
everything in Airflow's lookup, so the worker then resolves each option exactly as the client did),
and the ``_CMD`` / ``_SECRET`` variables behind resolved options are dropped. Variables already set
keep their original text; only options not already given by a variable are added.

What never crosses (:data:`DENYLIST`): metadata-DB and signing material. The zygote has no DB
access on purpose and workers never need it. The result is secret material: only variable *names*
are ever logged.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from protocol.limits import MAX_CONTAINER, MAX_FRAME, MAX_STR
from zygote.logs import get_logger

log = get_logger(__name__)

ENV_PREFIX = "AIRFLOW__"

DENYLIST = (
    "AIRFLOW__DATABASE__*",
    "AIRFLOW__CORE__SQL_ALCHEMY_CONN*",
    "AIRFLOW__CORE__FERNET_KEY*",
    "AIRFLOW__CELERY__BROKER_URL*",
    "AIRFLOW__CELERY__RESULT_BACKEND*",
    "AIRFLOW__API_AUTH__JWT_SECRET*",
    "AIRFLOW__API__SECRET_KEY*",
    "AIRFLOW__WEBSERVER__SECRET_KEY*",
    "AIRFLOW__ZYGOTE__CURVE_*",
)
"""Names (case-insensitive, shell patterns) never sent to the zygote (SPEC.md 4a).
``[webserver] secret_key`` is the deprecated name of ``[api] secret_key``."""

_DENIED = re.compile("|".join(fnmatch.translate(pattern) for pattern in DENYLIST))

PROCESS_BUDGET = MAX_FRAME // 2
"""Bytes of names and values one ``hello.process`` may carry, leaving the frame room for the rest."""


def process_snapshot(secrets: Iterable[str] = ()) -> dict[str, Any]:
    """``{"env": ..., "sys_path": ...}`` of this process, with the effective configuration folded in.

    ``secrets``: values that must not cross whatever variable holds them (the client's own CURVE
    secret key): a variable whose value is one of them is dropped.
    """
    env = fold_configuration(os.environ)
    return {"env": shareable_env(env, frozenset(s for s in secrets if s)), "sys_path": shareable_path(sys.path)}


def fold_configuration(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` plus every option Airflow resolves here, as ``AIRFLOW__<SECTION>__<OPTION>``."""
    from airflow.configuration import conf

    env = {name: value for name, value in environ.items() if not _is_resolved_source(conf, name)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation warnings were the dag-processor's to show, at its reads
        for section, option in _effective_options(conf):
            name = f"{ENV_PREFIX}{section.replace('.', '_').upper()}__{option.upper()}"
            if name in env or _denied(name):
                continue  # a variable keeps its own text; denied options are never resolved at all
            value = _resolve(conf, section, option)
            if value is not None:
                env[name] = value
    return env


def _effective_options(conf: Any) -> list[tuple[str, str]]:
    """Every (section, option) of the defaults and the config files, under its current name only.

    Old (deprecated) names are left out: Airflow redirects a read of an old name to the new one, and
    the new one's resolved value already accounts for a value given under the old name.
    """
    old_sections = set(conf.inversed_deprecated_sections)
    old_options = set(conf.inversed_deprecated_options)
    sensitive = conf.sensitive_config_values
    found = []
    for section in conf.get_sections_including_defaults():
        if section in old_sections:
            continue
        for option in conf.get_options_including_defaults(section):
            if (section, option) in old_options or _is_source_option(section, option, sensitive):
                continue
            found.append((section, option))
    return found


def _is_source_option(section: str, option: str, sensitive: set[tuple[str, str]]) -> bool:
    """``x_cmd`` / ``x_secret`` in a config file: a source of ``x``, not an option, when ``x`` honours it."""
    for suffix in ("_cmd", "_secret"):
        if option.endswith(suffix) and (section, option.removesuffix(suffix)) in sensitive:
            return True
    return False


def _is_resolved_source(conf: Any, name: str) -> bool:
    """``AIRFLOW__S__K_CMD`` / ``_SECRET`` of an option that honours it: its resolved value is sent instead."""
    if not name.startswith(ENV_PREFIX):
        return False
    section, _, option = name.removeprefix(ENV_PREFIX).partition("__")
    return bool(section and option) and _is_source_option(section.lower(), option.lower(), conf.sensitive_config_values)


def _resolve(conf: Any, section: str, option: str) -> str | None:
    """The option's value as this process reads it; ``None`` when it has none or cannot be read here.

    A ``_cmd`` that fails or a secrets backend that is down fails the same read in a stock child,
    so such an option is left for the worker to resolve (and fail) itself.
    """
    from airflow.exceptions import AirflowConfigException

    try:
        value = conf.get(section, option, suppress_warnings=True)
    except AirflowConfigException:
        return None  # no value anywhere (an option without a default), or its _cmd failed
    except Exception as exc:  # any source may raise: commands, secrets backends, interpolation
        log.warning("process.option_unresolved", section=section, option=option, error=type(exc).__name__)
        return None
    return None if value is None else str(value)


def shareable_env(env: Mapping[str, str], secrets: frozenset[str] = frozenset()) -> dict[str, str]:
    """``env`` less the denylist, the given secret values and what the protocol cannot carry."""
    kept: dict[str, str] = {}
    used = 0
    for name in sorted(env, key=lambda n: len(n) + len(env[n])):  # small first: drop the largest if over budget
        value = env[name]
        if _denied(name) or value in secrets:
            continue
        sizes = (_wire_size(name), _wire_size(value))
        if not all(0 <= size <= MAX_STR for size in sizes):
            log.warning("process.variable_dropped", variable=_printable(name), reason="over the str limit or not UTF-8")
            continue
        if used + sum(sizes) > PROCESS_BUDGET or len(kept) >= MAX_CONTAINER:
            log.warning("process.variable_dropped", variable=_printable(name), reason="hello.process budget spent")
            continue
        kept[name] = value
        used += sum(sizes)
    return kept


def shareable_path(path: Iterable[str]) -> list[str]:
    """``sys.path`` entries the protocol can carry (a non-UTF-8 or oversized entry is dropped, named)."""
    kept: list[str] = []
    for entry in path:
        size = _wire_size(entry)
        if 0 <= size <= MAX_STR and len(kept) < MAX_CONTAINER:
            kept.append(entry)
        else:
            log.warning("process.path_dropped", entry=_printable(entry)[:200])
    return kept


def _denied(name: str) -> bool:
    return _DENIED.match(name.upper()) is not None


def _wire_size(text: str) -> int:
    """UTF-8 bytes of ``text``; -1 when it cannot be sent as ``str`` (undecodable bytes from the OS)."""
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        return -1


def _printable(name: str) -> str:
    return name.encode(errors="backslashreplace").decode()[:256]
