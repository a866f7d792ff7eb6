"""Which files the zygote agrees to parse: only those under the allowed roots, symlinks resolved.

The checks never raise: a path the OS cannot even resolve (a NUL byte, a symlink loop, a name too
long) is refused with the reason, because a check that raises would let the request through
unchecked. A member of a zip archive (``/bundle/dags.zip/dag.py``) is judged by the archive's path.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from pathlib import Path


def resolved_roots(paths: Iterable[str]) -> tuple[Path, ...]:
    """``paths`` with ``~`` expanded and symlinks resolved, duplicates dropped, order kept."""
    return tuple(dict.fromkeys(Path(os.path.expanduser(p)).resolve() for p in paths))


def path_refusal(path: str, roots: tuple[Path, ...]) -> str:
    """Why the file ``path`` may not be parsed, or an empty string when it may."""
    resolved, problem = _resolve(path)
    if problem:
        return problem
    outside = _outside(path, resolved, roots)
    if outside:
        return outside
    if resolved.is_file():
        return ""
    archive = _enclosing_zip(resolved)
    if archive is not None and not _outside(path, archive, roots):
        return ""
    return f"{_shown(path)} does not exist or is not a file"


def directory_refusal(path: str, roots: tuple[Path, ...]) -> str:
    """Why ``path`` may not be a bundle directory (it goes on the worker's ``sys.path``)."""
    resolved, problem = _resolve(path)
    return problem or _outside(path, resolved, roots)


def _resolve(path: str) -> tuple[Path, str]:
    if not os.path.isabs(path):
        return Path(), f"{_shown(path)} is not an absolute path"
    try:
        return Path(path).resolve(), ""
    except (OSError, ValueError, RuntimeError) as exc:
        return Path(), f"{_shown(path)} cannot be resolved: {str(exc)[:200]}"


def _outside(path: str, resolved: Path, roots: tuple[Path, ...]) -> str:
    if any(resolved == root or root in resolved.parents for root in roots):
        return ""
    shown = ", ".join(str(root) for root in roots) or "(none configured)"
    return f"{_shown(path)} resolves to {_shown(str(resolved))}, outside the allowed roots: {shown}"


def _enclosing_zip(resolved: Path) -> Path | None:
    """The zip archive a non-existent ``resolved`` names a member of, if any."""
    for parent in resolved.parents:
        try:
            if parent.is_file():
                return parent if zipfile.is_zipfile(parent) else None
        except OSError:
            return None
    return None


def _shown(path: str, limit: int = 512) -> str:
    """A path for an error message: quoted, and cut if a client sent something huge."""
    return repr(path) if len(path) <= limit else repr(path[:limit]) + f"... ({len(path)} characters)"
