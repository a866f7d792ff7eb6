"""A DAG root that deployment tooling swaps under a running dag-processor keeps parsing through the zygote.

git-sync (the official Helm chart's way to ship DAGs) points ``dags_folder`` at
``<home>/dags/repo/<subPath>``, where ``repo`` is a symlink to ``.worktrees/<sha>``; each sync makes a
new worktree, renames a new symlink over ``repo`` (atomic) and deletes the old worktree. Release
tooling does the same with ``current -> releases/<n>``. With ``[zygote] fallback = fail`` a parse the
zygote refuses is a failed parse, so the DB only follows the swaps if every parse goes through it.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path
from typing import Any

import pytest
from fault_home import FaultHome, marker_dag
from processes import REFUSALS, DagProcessor, requests
from zygote_harness import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.timeout(420)]

SWAPS = 8
NO_WRITE_THROTTLE = {"AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0"}
"""Stock rewrites a changed DAG at most every 30 s: a commit's new task would show only then."""


def _write_commit(folder: Path, marker: Path, commit: int) -> None:
    """One "commit": ``common`` changes its task, ``only_<n>`` exists only in this commit."""
    folder.mkdir(parents=True)
    (folder / "common.py").write_text(marker_dag(marker, "common", task_id=f"task_of_{commit}"))
    (folder / f"only_{commit}.py").write_text(marker_dag(marker, f"only_{commit}"))


def _swap(link: Path, target: Path) -> None:
    """What git-sync does: a new symlink renamed over the old one."""
    staging = link.with_name(f".{link.name}.new")
    os.symlink(target, staging)
    os.replace(staging, link)


def _latest_tasks(home: FaultHome, dag_id: str) -> str:
    rows = home.rows(
        "select data, data_compressed from serialized_dag where dag_id = ? order by created_at desc limit 1", (dag_id,)
    )
    if not rows:
        return ""
    data, compressed = rows[0]
    payload = json.loads(zlib.decompress(compressed)) if compressed else json.loads(data)
    return json.dumps(payload["dag"]["tasks"])


def _matches_commit(home: FaultHome, commit: int) -> bool:
    return (
        home.active_dags() == {"common", f"only_{commit}"}
        and f"task_of_{commit}" in _latest_tasks(home, "common")
        and not home.import_errors()
    )


def _wait_commit(home: FaultHome, commit: int, zygote: Any, processor: DagProcessor, timeout: float) -> None:
    try:
        wait_for(lambda: _matches_commit(home, commit), timeout, f"commit {commit}'s DAGs in the DB", interval=0.5)
    except AssertionError as exc:
        errors = [stack[-300:] for _, stack in home.import_errors()]
        raise AssertionError(
            f"{exc}: zygote requests {requests(zygote)}, active DAGs {sorted(home.active_dags())}, "
            f"common's tasks {_latest_tasks(home, 'common')[:200]}, import errors {errors}, "
            f"dag-processor alive {processor.alive()}\n--- its log:\n{processor.log_text()[-5000:]}"
            f"\n--- the zygote's log:\n{zygote.log_text()[-5000:]}"
        ) from None


def _assert_only_deleted_files_refused(zygote: Any) -> None:
    """A file queued before a swap and deleted with the old tree is refused (it is gone); nothing else is."""
    refused = [e["file"] for e in zygote.events("request.finished") if e.get("outcome") == "rejected_path"]
    assert not [path for path in refused if os.path.exists(path)], refused


def _run_swaps(home: FaultHome, link: Path, worktree: Any, zygote: Any, processor: DagProcessor) -> None:
    _wait_commit(home, 0, zygote, processor, 120)
    for commit in range(1, SWAPS + 1):
        old = link.resolve()
        new = worktree(commit)
        _write_commit(new, home.marker, commit)
        _swap(link, new.parent if new.name == "dags" else new)
        shutil.rmtree(old.parent if old.name == "dags" else old)
        _wait_commit(home, commit, zygote, processor, 60)
        assert processor.alive()
        _assert_only_deleted_files_refused(zygote)
    parses = home.parses()
    assert parses and all(parse.ppid != processor.pid for parse in parses)  # no local parse at all
    # A parse in its marker file may still be running when status is read: wait for it to end.
    wait_for(lambda: sum(requests(zygote).values()) >= len(parses), 60, "the zygote to count every marked parse")
    counts = requests(zygote)
    _assert_only_deleted_files_refused(zygote)
    assert not (REFUSALS - {"rejected_path"}) & set(counts), counts  # every parse went to a worker (fallback = fail)
    unavailable = [line for line in processor.log_text().splitlines() if "zygote.unavailable" in line]
    assert all("rejected_path" in line for line in unavailable), unavailable


def test_git_sync_worktree_swaps_under_fallback_fail(
    tmp_path: Path, make_home: Any, zygote_factory: Any, start_processor: Any
) -> None:
    sync_root = tmp_path / "git-sync"
    worktrees = sync_root / ".worktrees"
    home = make_home("side", dags=sync_root / "repo" / "dags", AIRFLOW__ZYGOTE__FALLBACK="fail", **NO_WRITE_THROTTLE)
    _write_commit(worktrees / "sha0" / "dags", home.marker, 0)
    os.symlink(worktrees / "sha0", sync_root / "repo")
    zygote = zygote_factory(home.env)
    processor = start_processor(home)
    _run_swaps(home, sync_root / "repo", lambda n: worktrees / f"sha{n}" / "dags", zygote, processor)


def test_release_symlink_swaps_under_fallback_fail(
    tmp_path: Path, make_home: Any, zygote_factory: Any, start_processor: Any
) -> None:
    deploy = tmp_path / "deploy"
    releases = deploy / "releases"
    home = make_home("side", dags=deploy / "current", AIRFLOW__ZYGOTE__FALLBACK="fail", **NO_WRITE_THROTTLE)
    _write_commit(releases / "0", home.marker, 0)
    os.symlink(releases / "0", deploy / "current")
    zygote = zygote_factory(home.env)
    processor = start_processor(home)
    _run_swaps(home, deploy / "current", lambda n: releases / str(n), zygote, processor)
