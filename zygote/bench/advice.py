"""Preload advice: which unapproved modules cost the workers the most import time.

Each zygote worker reports the inclusive import time of every module its parse imported. Modules the
zygote could have preloaded would have cost nothing, so the time spent importing unapproved ones is
what approving them would save. The bench only *suggests* ``approved_modules`` lines: approving a
module means trusting its import-time side effects in the forker, which is the operator's call.

Modules are grouped by top-level package (``pandas.core.frame`` counts toward ``pandas``); within one
parse, a package costs the largest inclusive time among its modules (the top-level import already
includes its submodules). Savings of packages that import one another overlap.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from zygote.config import split_list

ALWAYS_APPROVED_ROOTS = frozenset({"airflow"})
DAG_MODULE_PREFIX = "unusual_prefix_"  # how Airflow names the modules of DAG files it imports


@dataclass(frozen=True)
class Suggestion:
    """One candidate for ``approved_modules``."""

    module: str
    seconds_total: float
    seconds_per_pass: float
    parses: int


def matches(module: str, pattern: str) -> bool:
    """``approved_modules`` semantics: an exact name, or ``prefix.*`` for a package and its submodules."""
    if pattern.endswith(".*"):
        prefix = pattern[:-2]
        return module == prefix or module.startswith(prefix + ".")
    return module == pattern


def is_approved(module: str, patterns: Sequence[str]) -> bool:
    """Approved by the user's patterns or implicitly (Airflow and its providers)."""
    if module.split(".", 1)[0] in ALWAYS_APPROVED_ROOTS:
        return True
    return any(matches(module, p) for p in patterns)


def suggestion_key(module: str, patterns: Sequence[str], dag_modules: frozenset[str]) -> str | None:
    """What to suggest for an unapproved module: its root package, or ``root.*`` if the root is approved."""
    root = module.split(".", 1)[0]
    if not root or root == "__main__" or root.startswith(DAG_MODULE_PREFIX) or root in dag_modules:
        return None
    if is_approved(module, patterns):
        return None
    return f"{root}.*" if is_approved(root, patterns) else root


def per_parse_costs(
    imports: Mapping[str, float], patterns: Sequence[str], dag_modules: frozenset[str]
) -> dict[str, float]:
    """Cost of each suggestion key within one parse (largest inclusive time in its group)."""
    costs: dict[str, float] = {}
    for module, seconds in imports.items():
        key = suggestion_key(module, patterns, dag_modules)
        if key is not None:
            costs[key] = max(costs.get(key, 0.0), seconds)
    return costs


def rank(
    reports: Iterable[Mapping[str, float]],
    approved: str,
    passes: int,
    *,
    dag_modules: frozenset[str] = frozenset(),
    limit: int = 10,
) -> list[Suggestion]:
    """The costliest unapproved packages across all parses, most expensive first."""
    patterns = split_list(approved)
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for imports in reports:
        for key, seconds in per_parse_costs(imports, patterns, dag_modules).items():
            totals[key] += seconds
            counts[key] += 1
    ordered = sorted(totals, key=lambda k: (-totals[k], k))[:limit]
    per_pass = max(passes, 1)
    return [Suggestion(k, totals[k], totals[k] / per_pass, counts[k]) for k in ordered]


def suggested_line(approved: str, suggestions: Sequence[Suggestion]) -> str | None:
    """An ``approved_modules = ...`` line adding the suggestions to what is already approved."""
    if not suggestions:
        return None
    current = list(split_list(approved))
    return "approved_modules = " + ", ".join([*current, *(s.module for s in suggestions if s.module not in current)])


def advise(
    reports: Sequence[Mapping[str, float]],
    approved: str,
    passes: int,
    *,
    dag_modules: frozenset[str] = frozenset(),
    source: str = "ledger",
) -> dict[str, object]:
    """The ``advice`` section of the report."""
    suggestions = rank(reports, approved, passes, dag_modules=dag_modules)
    return {
        "source": source if reports else "none",
        "approved_modules": approved,
        "passes": passes,
        "modules": [asdict(s) for s in suggestions],
        "suggested_line": suggested_line(approved, suggestions),
        "note": "Suggestions only: nothing is approved automatically. Savings overlap when one package imports "
        "another.",
    }
