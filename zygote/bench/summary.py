"""Turn a finished :class:`Bench` into the report document (comparisons, memory figures, advice)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zygote.bench import advice as advice_mod
from zygote.bench.aggregate import compare
from zygote.bench.environment import SIDES
from zygote.bench.memory import breakeven, same_throughput
from zygote.bench.report import build_report
from zygote.bench.results import Json, round_to_json
from zygote.bench.runner import Bench


def comparisons(bench: Bench) -> dict[str, Json]:
    """``by_parallelism``: stock, zygote and ratios for every parallelism value measured."""
    return {
        str(p): compare(p, bench.results.get((p, "stock"), []), bench.results.get((p, "zygote"), []))
        for p in bench.config.parallelism
    }


def raw_rounds(bench: Bench) -> dict[str, Json]:
    """Every round's raw figures, per parallelism and side."""
    return {
        str(p): {side: [round_to_json(r) for r in bench.results.get((p, side), [])] for side in SIDES}
        for p in bench.config.parallelism
    }


def preload_advice(bench: Bench, dag_modules: frozenset[str]) -> dict[str, object]:
    """Advice from the workers' import reports (ledger), else from the zygotes' status ``import_costs``."""
    zygote_rounds = [r for p in bench.config.parallelism for r in bench.results.get((p, "zygote"), []) if r.ok]
    reports = [c.imports for r in zygote_rounds for c in r.output.children if c.imports]
    passes = len(zygote_rounds)
    approved, preload = bench.config.approved_modules, preload_states(bench.statuses.values())
    if reports:
        return advice_mod.advise(reports, approved, passes, dag_modules=dag_modules, source="ledger", preload=preload)
    status_costs = summed_import_costs(bench.statuses.values())
    reports_from_status = [status_costs] if status_costs else []
    return advice_mod.advise(
        reports_from_status, approved, passes, dag_modules=dag_modules, source="status", preload=preload
    )


def preload_states(statuses: Any) -> dict[str, Any]:
    """The zygotes' ``preload`` sections merged (the last parallelism's zygote wins on conflicts)."""
    merged: dict[str, Any] = {}
    for status in statuses:
        preload = (status or {}).get("preload")
        if isinstance(preload, Mapping):
            merged.update(preload)
    return merged


def summed_import_costs(statuses: Any) -> dict[str, float]:
    """``import_costs`` of every zygote's final status, summed."""
    total: dict[str, float] = defaultdict(float)
    for status in statuses:
        costs = (status or {}).get("import_costs")
        if isinstance(costs, Mapping):
            for module, seconds in costs.items():
                if isinstance(seconds, int | float):
                    total[str(module)] += float(seconds)
    return dict(total)


def dag_module_names(corpus: Path) -> frozenset[str]:
    """Names the DAG files themselves could be imported under; never preload candidates."""
    return frozenset(p.stem for p in corpus.rglob("*.py"))


def assemble(bench: Bench, meta: Json) -> Json:
    """The whole report document."""
    by_parallelism = comparisons(bench)
    headline = bench.config.parallelism[0]
    extras = {
        "breakeven": breakeven(by_parallelism),
        "same_throughput": same_throughput(by_parallelism, headline),
        "advice": preload_advice(bench, dag_module_names(bench.homes.corpus)),
        "zygote_status": {str(p): bench.statuses.get(p) for p in bench.config.parallelism},
    }
    return build_report(meta, by_parallelism, extras, raw_rounds(bench), headline)
