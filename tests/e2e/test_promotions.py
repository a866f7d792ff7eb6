"""One pass over a new folder settles the preload set in few rounds, and a restart starts warm.

A real zygote with a state file serves a small DAG folder whose files import several slow
approved libraries (written here, each with a submodule), one that starts a thread at import and
one that is cheap to import but big. One pass (the files parsed at once) leaves nothing pending:
the slow ones are loaded in a couple of promotion rounds (one collect and freeze each), the
thread starter is rejected without tainting the others' verdicts, the big one is verified but not
worth holding. A second zygote on the same state file has the slow ones loaded before its first
parse and does not probe the thread starter again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from preload_support import connected, dags_folder, importing_dag, preload_of, zygote_env
from zygote_harness import ParseDriver, ZygoteProcess, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]  # two zygotes start: slow on a loaded machine

SLOW = [f"zt_pr_slow{i}" for i in range(5)]
LIBS = {
    **{name: "import time\ntime.sleep(0.25)\nfrom {name} import part\n" for name in SLOW},
    "zt_pr_thread": "import threading\nthreading.Thread(target=threading.Event().wait, daemon=True).start()\n",
    "zt_pr_bulky": "BLOB = b'x' * (96 * 2**20)\n",
}
FILES = {
    "pr_a": ["zt_pr_slow0", "zt_pr_slow1", "zt_pr_thread"],
    "pr_b": ["zt_pr_slow1", "zt_pr_slow2", "zt_pr_bulky"],
    "pr_c": ["zt_pr_slow2", "zt_pr_slow3"],
    "pr_d": ["zt_pr_slow3", "zt_pr_slow4", "zt_pr_slow0"],
}
UNSETTLED = {"pending", "probing"}


@pytest.fixture
def libs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The libraries, on the test process's sys.path (the session's, which workers run with)."""
    folder = tmp_path / "libs"
    for name, code in LIBS.items():
        package = folder / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(code.format(name=name))
        (package / "part.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(folder))
    return folder


@pytest.fixture
def env(tmp_path: Path, libs: Path, migrated_db: Path) -> dict[str, str]:
    env = zygote_env(
        approved_modules="zt_pr_*",
        preload_state_file=str(tmp_path / "preload.json"),
        preload_interval="2",
        # The big library costs ~475 ms a parse: more than it saves even when building its 96 MiB takes
        # a worker a second (at a load average of 25 it took ~0.9 s, and 1.0 here made it worth holding).
        preload_cost_per_mib="5.0",
    )
    env["PYTHONPATH"] = f"{libs}:{env['PYTHONPATH']}"
    return env


@pytest.fixture
def zygote(tmp_path: Path, env: dict[str, str]) -> Iterator[ZygoteProcess]:
    process = ZygoteProcess.start(env, tmp_path / "zygote.log")
    yield process
    process.stop()


def one_pass(driver: ParseDriver, connection: Any, dags: Path) -> dict[str, dict[str, float]]:
    """Every file parsed at once, as a dag-processor's first pass would; file -> its imports."""
    paths = [importing_dag(dags, dag_id, *modules) for dag_id, modules in FILES.items()]
    procs = [driver.start_zygote(connection, path, dags) for path in paths]
    imports = {}
    for path, proc in zip(paths, procs, strict=True):
        outcome = driver.finish(proc, timeout=120)
        assert outcome.exit_code == 0 and outcome.result.import_errors == {}, outcome.log_text[-2000:]
        [entry] = [e for e in connection.ledger.entries if e.request_id == str(proc.id)]
        imports[path.stem] = entry.stats.get("imports", {})
    return imports


def ours(zygote: ZygoteProcess) -> dict[str, dict[str, Any]]:
    return {name: record for name, record in preload_of(zygote).items() if name.startswith("zt_pr_")}


def settled(zygote: ZygoteProcess) -> dict[str, dict[str, Any]] | None:
    """Nothing left to probe and no round under way (a verified module is judged at its round's end)."""
    status = zygote.status()
    records = {name: record for name, record in status["preload"].items() if name.startswith("zt_pr_")}
    unsettled = {r["state"] for r in records.values()} & UNSETTLED or status["forker"]["promoting"]
    return records if records and not unsettled else None


def test_one_pass_settles_in_few_rounds_and_a_restart_starts_warm(
    zygote: ZygoteProcess, env: dict[str, str], tmp_path: Path, driver: ParseDriver
) -> None:
    dags = dags_folder("promotions")
    with connected(zygote) as connection:
        first = one_pass(driver, connection, dags)
        assert first["pr_a"]["zt_pr_slow0"] >= 0.25  # the workers paid the imports
        records = wait_for(lambda: settled(zygote), 90, "the preload set to settle", 0.2)

        for name in SLOW:
            assert records[name]["state"] == "loaded", (name, records[name])
            assert records[f"{name}.part"]["state"] == "loaded"  # came with its package
        assert records["zt_pr_thread"]["state"] == "rejected"
        assert "thread" in records["zt_pr_thread"]["reason"]
        bulky = records["zt_pr_bulky"]
        assert bulky["state"] == "verified", bulky
        assert bulky["reason"].startswith("not worth holding yet: would save") and bulky["costs_ms"] > 80
        assert bulky["parses"] == 1
        # One collect+freeze per round, not per module: the pass loaded 10 of ours (and Airflow's own
        # lazy imports) in at most two rounds, plus a later one for modules whose worth grew.
        promotions = zygote.events("preload.loaded")
        assert 1 <= len(promotions) <= 3, promotions
        assert zygote.status()["forker"]["threads"] == 1

        second = one_pass(driver, connection, dags)
        assert not [m for imports in second.values() for m in imports if m.startswith("zt_pr_slow")], second
        assert "zt_pr_bulky" in second["pr_b"]  # not held: its worker imports it

    zygote.stop()
    restarted = ZygoteProcess.start(env, tmp_path / "zygote-restarted.log")
    try:
        warm = ours(restarted)
        assert all(warm[name]["state"] == "loaded" for name in SLOW), warm
        assert warm["zt_pr_thread"]["reason"].endswith("(remembered)")
        with connected(restarted) as connection:
            third = one_pass(driver, connection, dags)
        assert not [m for imports in third.values() for m in imports if m.startswith("zt_pr_slow")], third
        assert not [e for e in restarted.events("preload.probing") if e.get("first") == "zt_pr_thread"]
    finally:
        restarted.stop()
