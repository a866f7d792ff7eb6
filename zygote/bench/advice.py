"""Preload advice: which unapproved modules cost the workers the most import time.

Each zygote worker reports the inclusive import time of every module its parse imported. Modules the
zygote could have preloaded would have cost nothing, so the time spent importing unapproved ones is
what approving them would save. The bench only *suggests* ``approved_modules`` lines: approving a
module means trusting its import-time side effects in the forker, which is the operator's call.

Modules are grouped by top-level package (``pandas.core.frame`` counts toward ``pandas``, and
approving ``pandas`` covers its submodules); within one parse, a package costs the largest inclusive
time among its modules (the top-level import already includes its submodules). Savings of packages
that import one another overlap. Matching is the zygote's own (``ApprovedPatterns``). Approved packages the workers still had to import (the zygote
rejected or has not yet verified their preload) are listed separately, with the zygote's reason.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from zygote.config import split_list
from zygote.forker.preload import ApprovedPatterns

DAG_MODULE_PREFIX = "unusual_prefix_"  # how Airflow names the modules of DAG files it imports
MIN_SECONDS_PER_PASS = 0.001  # below a millisecond per pass a suggestion is noise


@dataclass(frozen=True)
class Suggestion:
    """One package and what importing it cost the workers."""

    module: str
    seconds_total: float
    seconds_per_pass: float
    parses: int


@functools.cache
def always_approved() -> ApprovedPatterns:
    """Airflow and every installed provider's package: the zygote approves them itself."""
    return ApprovedPatterns.with_airflow(())


def package_of(module: str, dag_modules: frozenset[str]) -> str | None:
    """Top-level package a module's cost is charged to; ``None`` for DAG files and Airflow itself."""
    root = module.split(".", 1)[0]
    if not root or root == "__main__" or root.startswith(DAG_MODULE_PREFIX) or root in dag_modules:
        return None
    return None if always_approved().matches(root) else root


def per_parse_costs(
    imports: Mapping[str, float], patterns: ApprovedPatterns, dag_modules: frozenset[str], *, approved: bool
) -> dict[str, float]:
    """Cost per package within one parse (largest inclusive time among its modules), keeping only
    unapproved packages, or only approved ones (those the zygote should have preloaded)."""
    costs: dict[str, float] = {}
    for module, seconds in imports.items():
        package = package_of(module, dag_modules)
        if package is not None and patterns.matches(package) == approved:
            costs[package] = max(costs.get(package, 0.0), seconds)
    return costs


def rank(
    reports: Iterable[Mapping[str, float]],
    approved_modules: str,
    passes: int,
    *,
    dag_modules: frozenset[str] = frozenset(),
    limit: int = 10,
    approved: bool = False,
) -> list[Suggestion]:
    """The costliest packages across all parses, most expensive first (unapproved ones by default)."""
    patterns = ApprovedPatterns.with_airflow(split_list(approved_modules))
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for imports in reports:
        for key, seconds in per_parse_costs(imports, patterns, dag_modules, approved=approved).items():
            totals[key] += seconds
            counts[key] += 1
    per_pass = max(passes, 1)
    kept = [k for k in totals if totals[k] / per_pass >= MIN_SECONDS_PER_PASS]
    ordered = sorted(kept, key=lambda k: (-totals[k], k))[:limit]
    return [Suggestion(k, totals[k], totals[k] / per_pass, counts[k]) for k in ordered]


def suggested_line(approved: str, suggestions: Sequence[Suggestion]) -> str | None:
    """An ``approved_modules = ...`` line adding the suggestions to what is already approved."""
    if not suggestions:
        return None
    current = list(split_list(approved))
    return "approved_modules = " + ", ".join([*current, *(s.module for s in suggestions if s.module not in current)])


def not_preloaded(
    reports: Sequence[Mapping[str, float]],
    approved_modules: str,
    passes: int,
    preload: Mapping[str, Any],
    dag_modules: frozenset[str],
) -> list[dict[str, Any]]:
    """Approved packages the workers still imported, with the zygote's preload state and reason."""
    ranked = rank(reports, approved_modules, passes, dag_modules=dag_modules, approved=True)
    rows = []
    for s in ranked:
        found = preload.get(s.module)
        entry: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        rows.append({**asdict(s), "state": entry.get("state"), "reason": entry.get("reason")})
    return rows


def advise(
    reports: Sequence[Mapping[str, float]],
    approved: str,
    passes: int,
    *,
    dag_modules: frozenset[str] = frozenset(),
    source: str = "ledger",
    preload: Mapping[str, Any] | None = None,
) -> dict[str, object]:
    """The ``advice`` section of the report."""
    suggestions = rank(reports, approved, passes, dag_modules=dag_modules)
    return {
        "source": source if reports else "none",
        "approved_modules": approved,
        "passes": passes,
        "modules": [asdict(s) for s in suggestions],
        "suggested_line": suggested_line(approved, suggestions),
        "approved_not_preloaded": not_preloaded(reports, approved, passes, preload or {}, dag_modules),
        "note": "Suggestions only: nothing is approved automatically. Savings overlap when one package imports "
        "another.",
    }
