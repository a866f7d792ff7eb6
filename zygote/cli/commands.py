"""Implementations of ``airflow zygote ...`` (imported only when a command runs)."""

from __future__ import annotations

import json
import os
import sys
from argparse import Namespace
from typing import Any

from zygote.config import load_settings


def serve(args: Namespace) -> None:
    """``airflow zygote serve``: read Airflow's config here, then become the lean gateway (same pid).

    The secrets travel in the boot pipe only: the gateway's environment (readable by same-uid DAG
    code in ``/proc/<pid>/environ``) is this one without them.
    """
    from zygote.gateway.boot import GatewayBoot, hand_over
    from zygote.gateway.forker_link import without_secrets
    from zygote.gateway.main import GATEWAY_CODE, ISOLATED_FLAGS

    boot_fd = hand_over(GatewayBoot.from_airflow())
    argv = [sys.executable, *ISOLATED_FLAGS, "-c", GATEWAY_CODE, "--boot-fd", str(boot_fd)]
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
    forker = report.get("forker", {})
    workers = report.get("workers", {})
    preload = report.get("preload", {})
    states: dict[str, int] = {}
    for entry in preload.values():
        states[entry.get("state", "?")] = states.get(entry.get("state", "?"), 0) + 1
    lines = [
        f"healthy:   {report.get('healthy')}",
        f"versions:  {report.get('versions')}",
        f"gateway:   pid {report.get('gateway', {}).get('pid')}, clients {report.get('gateway', {}).get('clients')}",
        f"forker:    pid {forker.get('pid')}, generation {forker.get('generation')}, threads {forker.get('threads')}, "
        f"frozen {forker.get('frozen_objects')}, state {forker.get('state')}",
        f"workers:   running {workers.get('running')}, queued {workers.get('queued')}, max {workers.get('max')}",
        f"requests:  {report.get('requests')}",
        f"fork_ms:   {report.get('fork_ms')}",
        f"parse_s:   {report.get('parse_s')}",
        f"preload:   {states}",
    ]
    rejected = {name: e.get("reason") for name, e in preload.items() if e.get("state") == "rejected"}
    lines += [f"  rejected {name}: {reason}" for name, reason in sorted(rejected.items())[:20]]
    return "\n".join(lines)
