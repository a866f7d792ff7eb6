"""allowed_paths: roots kept as configured and resolved at each check, so symlink swaps are followed."""

from __future__ import annotations

import os
import threading
import zipfile
from pathlib import Path

from zygote.gateway.allowed_paths import directory_refusal, path_refusal


def _gitsync(tmp_path: Path) -> tuple[Path, Path]:
    """``repo -> .worktrees/aaa`` holding ``dags/f.py``, like git-sync; returns (root, file)."""
    for sha in ("aaa", "bbb"):
        (tmp_path / ".worktrees" / sha / "dags").mkdir(parents=True)
        (tmp_path / ".worktrees" / sha / "dags" / "f.py").write_text("x = 1\n")
    (tmp_path / "repo").symlink_to(tmp_path / ".worktrees" / "aaa")
    return tmp_path / "repo" / "dags", tmp_path / "repo" / "dags" / "f.py"


def _swap(tmp_path: Path, sha: str) -> None:
    """Atomically point ``repo`` at ``sha`` (a new symlink renamed over the old one)."""
    new = tmp_path / "repo.new"
    new.symlink_to(tmp_path / ".worktrees" / sha)
    os.replace(new, tmp_path / "repo")


def test_a_file_under_a_root_passes_and_one_outside_is_refused(tmp_path: Path) -> None:
    root, file = _gitsync(tmp_path)
    (tmp_path / "outside.py").write_text("")
    assert path_refusal(str(file), [str(root)]) == ""
    assert "outside the allowed roots" in path_refusal(str(tmp_path / "outside.py"), [str(root)])
    assert "not an absolute path" in path_refusal("dags/f.py", [str(root)])
    assert "does not exist" in path_refusal(str(root / "missing.py"), [str(root)])
    assert "cannot be resolved" in path_refusal("/a\0b", [str(root)])


def test_after_a_gitsync_swap_the_new_target_is_allowed(tmp_path: Path) -> None:
    root, file = _gitsync(tmp_path)
    _swap(tmp_path, "bbb")
    assert path_refusal(str(file), [str(root)]) == ""
    assert directory_refusal(str(root), [str(root)]) == ""
    assert "outside" in directory_refusal(str(tmp_path / ".worktrees" / "aaa" / "dags"), [str(root)])


def test_a_symlink_that_escapes_the_root_is_refused(tmp_path: Path) -> None:
    root, _ = _gitsync(tmp_path)
    secret = tmp_path / "secret.py"
    secret.write_text("")
    (root / "escape.py").symlink_to(secret)
    assert "outside the allowed roots" in path_refusal(str(root / "escape.py"), [str(root)])
    assert "outside" in path_refusal(str(root / ".." / ".." / "secret.py"), [str(root)])


def test_a_member_of_a_zip_under_a_root_passes(tmp_path: Path) -> None:
    root, _ = _gitsync(tmp_path)
    with zipfile.ZipFile(root / "bundle.zip", "w") as archive:
        archive.writestr("dag.py", "x = 1\n")
    assert path_refusal(str(root / "bundle.zip" / "dag.py"), [str(root)]) == ""


def test_checks_during_continuous_swaps_never_refuse_a_good_path(tmp_path: Path) -> None:
    root, file = _gitsync(tmp_path)
    stop = threading.Event()
    swaps: list[str] = []

    def swapper() -> None:  # every 2 ms: git-sync swaps once per sync (tens of seconds)
        while not stop.wait(0.002):
            for sha in ("bbb", "aaa"):
                _swap(tmp_path, sha)
                swaps.append(sha)

    thread = threading.Thread(target=swapper)
    thread.start()
    try:
        refusals = [r for r in (path_refusal(str(file), [str(root)]) for _ in range(300)) if r]
    finally:
        stop.set()
        thread.join()
    assert refusals == []
    assert len(swaps) > 10, "the root was swapped while the checks ran"
