"""Implementations of ``airflow zygote ...`` (imported only when a command runs)."""

from __future__ import annotations

import json
import os
import sys
from argparse import Namespace
from typing import Any

from protocol import Outcome
from zygote.config import load_settings


def serve(args: Namespace) -> None:
    """``airflow zygote serve``: read Airflow's config here, then become the lean gateway (same pid).

    The secrets travel in the boot pipe only: the gateway's environment (readable by same-uid DAG
    code in ``/proc/<pid>/environ``) is this one without them.
    """
    from zygote.gateway.boot import GatewayBoot, hand_over, python_argv
    from zygote.gateway.forker_link import without_secrets
    from zygote.gateway.main import GATEWAY_CODE

    boot_fd = hand_over(GatewayBoot.from_airflow())
    argv = [*python_argv(GATEWAY_CODE), "--boot-fd", str(boot_fd)]
    if getattr(args, "verbose", False):
        argv.append("--verbose")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, without_secrets(os.environ))


def status(args: Namespace) -> None:
    """``airflow zygote status``: exit 0 when healthy, 1 when not, 2 when unreachable."""
    from zygote.client.control import ControlError, query_status

    try:
        report = query_status(load_settings())
    except ControlError as exc:
        print(f"airflow zygote status: {exc}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(report, indent=2, sort_keys=True) if args.json else _human(report))
    sys.exit(0 if report.get("healthy") else 1)


def reload(args: Namespace) -> None:
    """``airflow zygote reload``: a new forker generation; returns once it serves."""
    from zygote.client.control import ControlError, request_reload

    try:
        print(request_reload(load_settings()))
    except ControlError as exc:
        print(f"airflow zygote reload: {exc}", file=sys.stderr)
        sys.exit(2)


def dag_processor(args: Namespace) -> None:
    """``airflow zygote dag-processor``: Airflow's dag-processor with zygote-forked parse children."""
    from zygote.client.command import run_dag_processor

    run_dag_processor(args)


def _human(report: dict[str, Any]) -> str:
    """The status at a glance: health, who serves, and whether recent parses used the zygote."""
    forker = report.get("forker") or {}
    workers = report.get("workers") or {}
    gateway = report.get("gateway") or {}
    versions = report.get("versions") or {}
    reason = f" ({report['reason']})" if report.get("reason") else ""
    lines = [
        f"healthy:   {report.get('healthy')}{reason}",
        f"versions:  airflow {versions.get('airflow')}, python {versions.get('python')}, "
        f"protocol {versions.get('protocol')}",
        f"gateway:   pid {gateway.get('pid')}, clients {gateway.get('clients')}, up {gateway.get('uptime_s')} s"
        + (", draining" if gateway.get("draining") else ""),
        f"forker:    pid {forker.get('pid')}, generation {forker.get('generation')}, {forker.get('state')}, "
        f"threads {forker.get('threads')}, frozen {forker.get('frozen_objects')}, rss {_mib(forker.get('rss'))}",
        f"workers:   running {workers.get('running')} of {workers.get('max')}, queued {workers.get('queued')}, "
        f"pooled {workers.get('pooled', 0)}",
        f"requests:  {_requests_line(report.get('requests') or {})}",
    ]
    if report.get("recent"):
        lines.append(f"recent:    {_recent_line(report['recent'])}")
    lines += [
        f"fork:      {_summary(report.get('fork_ms'), 'ms', 1.0)}",
        f"parse:     {_summary(report.get('parse_s'), 's', 1.0)}",
        f"peak USS:  {_summary(report.get('worker_peak_uss'), 'MiB', 1 / MIB)}",
        f"peak PSS:  {_summary(report.get('worker_peak_pss'), 'MiB', 1 / MIB)}",
        f"preload:   {_preload_line(report.get('preload') or {})}",
    ]
    rejected = {
        name: e.get("reason") for name, e in (report.get("preload") or {}).items() if e.get("state") == "rejected"
    }
    lines += [f"  rejected {name}: {why}" for name, why in sorted(rejected.items())[:20]]
    held_back = {
        name: e.get("reason") for name, e in (report.get("preload") or {}).items() if e.get("state") == "verified"
    }
    lines += [f"  not held {name}: {why}" for name, why in sorted(held_back.items())[:20] if why]
    return "\n".join(lines)


MIB = 1024 * 1024
WORKER_OUTCOMES = frozenset(outcome.value for outcome in Outcome)
"""Outcomes of parses a worker ran; every other key of ``requests`` is an error code (not run)."""


def _requests_line(requests: dict[str, int]) -> str:
    ran = {k: v for k, v in requests.items() if k in WORKER_OUTCOMES}
    refused = {k: v for k, v in requests.items() if k not in WORKER_OUTCOMES}
    return f"{sum(ran.values())} parsed by the zygote{_counts(ran)}, {sum(refused.values())} not{_counts(refused)}"


def _recent_line(recent: dict[str, Any]) -> str:
    spawns, refused = recent.get("spawns", 0), recent.get("refused") or {}
    used = spawns - sum(refused.values())
    verdict = "bypassed" if spawns and used == 0 else "used" if spawns else "idle"
    return (
        f"{verdict}: of the last {spawns} spawns in {recent.get('window_s')} s, {used} parsed by the zygote, "
        f"{sum(refused.values())} refused{_counts(refused)}"
    )


def _counts(counts: dict[str, int]) -> str:
    """`` (a 3, b 1)``, largest first, or nothing."""
    return (
        " (" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) + ")" if counts else ""
    )


def _summary(summary: Any, unit: str, scale: float) -> str:
    if not isinstance(summary, dict) or not summary.get("count"):
        return "no samples yet"
    p50, p95, top = (float(summary.get(key) or 0) * scale for key in ("p50", "p95", "max"))
    return f"p50 {p50:.1f} {unit}, p95 {p95:.1f} {unit}, max {top:.1f} {unit} ({summary['count']} samples)"


def _mib(value: Any) -> str:
    return f"{value / MIB:.0f} MiB" if isinstance(value, int | float) else "?"


def _preload_line(preload: dict[str, Any]) -> str:
    states: dict[str, int] = {}
    for entry in preload.values():
        states[entry.get("state", "?")] = states.get(entry.get("state", "?"), 0) + 1
    return _counts(states).strip(" ()") or "nothing approved"
