"""Which files the zygote agrees to parse: only those under the allowed roots, symlinks resolved."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from zygote.config import Settings


def allowed_roots(settings: Settings) -> tuple[Path, ...]:
    """Configured roots, or the DAG bundle roots and the bundle storage path."""
    if settings.allowed_roots:
        return _resolved(settings.allowed_roots)
    from airflow.configuration import conf

    roots = [
        conf.get("core", "dags_folder"),
        conf.get("dag_processor", "dag_bundle_storage_path", fallback=""),
    ]
    roots += _bundle_paths(conf.get("dag_processor", "dag_bundle_config_list", fallback="[]"))
    return _resolved(root for root in roots if root)


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


def _resolved(paths: Iterable[str]) -> tuple[Path, ...]:
    return tuple(dict.fromkeys(Path(os.path.expanduser(p)).resolve() for p in paths))


def path_refusal(path: str, roots: tuple[Path, ...]) -> str:
    """Why ``path`` may not be parsed, or an empty string when it may."""
    if not os.path.isabs(path):
        return f"{path!r} is not an absolute path"
    resolved = Path(path).resolve()
    if not any(resolved == root or root in resolved.parents for root in roots):
        shown = ", ".join(str(root) for root in roots) or "(none configured)"
        return f"{path!r} resolves to {str(resolved)!r}, outside the allowed roots: {shown}"
    if not resolved.is_file():
        return f"{path!r} does not exist or is not a file"
    return ""
