"""Which files the zygote agrees to parse: only those under the allowed roots, symlinks resolved.

Roots are kept as configured and resolved at every check, because git-sync and release tooling
swap a root's symlink (``repo -> .worktrees/<sha>``) under the running zygote. A swap between
resolving the path and resolving a root must neither refuse a good path nor let a bad one in, so
each root is resolved before *and* after the path: the path passes if it lies under either (both
are targets the root really had during the check). A path found outside is checked again a few
times (two swaps within one check could swap back; a path that really escapes stays outside).

The checks never raise: a path the OS cannot even resolve (a NUL byte, a symlink loop, a name too
long) is refused with the reason, because a check that raises would let the request through
unchecked. A member of a zip archive (``/bundle/dags.zip/dag.py``) is judged by the archive's path.
These checks touch the filesystem (which can stall on a network mount): the gateway runs them off
its loop (``path_checks``).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

ATTEMPTS = 5


def path_refusal(path: str, roots: Iterable[str]) -> str:
    """Why the file ``path`` may not be parsed, or an empty string when it may."""
    _, problem = _resolve(path)
    if problem:
        return problem
    outside = _check_under(path, roots, lambda: _resolve(path)[0])
    if outside:
        return outside
    if Path(path).is_file():
        return ""
    archive = _enclosing_zip(Path(path))
    if archive is not None and not _check_under(path, roots, lambda: _resolve(str(archive))[0]):
        return ""
    return f"{_shown(path)} does not exist or is not a file"


def directory_refusal(path: str, roots: Iterable[str]) -> str:
    """Why ``path`` may not be a bundle directory (it goes on the worker's ``sys.path``)."""
    _, problem = _resolve(path)
    return problem or _check_under(path, roots, lambda: _resolve(path)[0])


def _check_under(path: str, roots: Iterable[str], target: Callable[[], Path]) -> str:
    """ "" when ``target()`` lies under a root as resolved just before or just after it."""
    configured = tuple(roots)
    last = ""
    for _ in range(ATTEMPTS):
        before = _resolved_roots(configured)
        resolved = target()
        after = _resolved_roots(configured)
        if _inside(resolved, before + after):
            return ""
        shown = ", ".join(str(root) for root in dict.fromkeys(after)) or "(none configured)"
        last = f"{_shown(path)} resolves to {_shown(str(resolved))}, outside the allowed roots: {shown}"
    return last


def _resolved_roots(configured: tuple[str, ...]) -> tuple[Path, ...]:
    roots = []
    for root in configured:
        try:
            roots.append(Path(os.path.expanduser(root)).resolve())
        except (OSError, ValueError, RuntimeError):
            continue  # a root that cannot be resolved now allows nothing now
    return tuple(roots)


def _inside(resolved: Path, roots: tuple[Path, ...]) -> bool:
    return any(resolved == root or root in resolved.parents for root in roots)


def _resolve(path: str) -> tuple[Path, str]:
    if not os.path.isabs(path):
        return Path(), f"{_shown(path)} is not an absolute path"
    try:
        return Path(path).resolve(), ""
    except (OSError, ValueError, RuntimeError) as exc:
        return Path(), f"{_shown(path)} cannot be resolved: {str(exc)[:200]}"


def _enclosing_zip(path: Path) -> Path | None:
    """The zip archive a non-existent ``path`` names a member of, if any."""
    for parent in path.parents:
        try:
            if parent.is_file():
                return parent if zipfile.is_zipfile(parent) else None
        except OSError:
            return None
    return None


def _shown(path: str, limit: int = 512) -> str:
    """A path for an error message: quoted, and cut if a client sent something huge."""
    return repr(path) if len(path) <= limit else repr(path[:limit]) + f"... ({len(path)} characters)"
