"""Thin wrappers over the Linux facilities the zygote relies on (prctl, /proc, fds, rlimits)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import resource
import signal
from collections.abc import Iterable

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_DUMPABLE = 4
_PR_SET_THP_DISABLE = 41
_PR_GET_THP_DISABLE = 42
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _prctl(option: int, value: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    result: int = libc.prctl(option, value, 0, 0, 0)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


_THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"


def transparent_huge_pages_mode(path: str = _THP_ENABLED) -> str:
    """The system's THP mode (``always``, ``madvise``, ``never``), or "" where the kernel has none."""
    try:
        with open(path) as handle:
            found = re.search(r"\[(\w+)\]", handle.read())
    except OSError:
        return ""
    return found.group(1) if found else ""


def disable_transparent_huge_pages() -> None:
    """No THP for this process and its future children (inherited across fork, as Redis does).

    With THP ``always``, a copy-on-write fault in a worker copies a 2 MiB huge page of the
    forker's heap instead of a 4 KiB page: every worker's private memory grows with it.
    """
    _prctl(_PR_SET_THP_DISABLE, 1)


def transparent_huge_pages_disabled() -> bool:
    return _prctl(_PR_GET_THP_DISABLE, 0) == 1


def set_parent_death_signal(signum: int) -> None:
    """Have the kernel send ``signum`` to this process when its parent dies."""
    _prctl(_PR_SET_PDEATHSIG, signum)


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process (so it can reap and kill them)."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def make_undumpable() -> None:
    """No core dumps and no same-uid ``ptrace`` or ``/proc/<pid>/mem|environ`` reads of this process."""
    _prctl(_PR_SET_DUMPABLE, 0)


def native_thread_count() -> int:
    """Threads of this process as the kernel sees them (C threads included)."""
    return len(os.listdir("/proc/self/task"))


def open_fds() -> set[int]:
    """File descriptors open in this process."""
    fds = {int(name) for name in os.listdir("/proc/self/fd")}
    return {fd for fd in fds if _is_open(fd)}


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def close_fds_except(keep: Iterable[int]) -> None:
    """Close every fd but ``keep``: a worker inherits nothing it does not need."""
    for fd in open_fds() - set(keep):
        with contextlib.suppress(OSError):
            os.close(fd)


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (all threads), from /proc."""
    children: list[int] = []
    task_dir = f"/proc/{pid}/task"
    try:
        tids = os.listdir(task_dir)
    except OSError:
        return children
    for tid in tids:
        try:
            with open(f"{task_dir}/{tid}/children") as handle:
                children.extend(int(p) for p in handle.read().split())
        except OSError:
            continue
    return children


def smaps_memory(pid: int | str = "self") -> dict[str, int]:
    """USS, PSS and RSS in bytes from ``/proc/<pid>/smaps_rollup`` (cheap, no psutil)."""
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB":
                    fields[name] = int(parts[0]) * 1024
    except OSError:
        return {}
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {"uss": uss, "pss": fields.get("Pss", 0), "rss": fields.get("Rss", 0)}


def own_usage() -> dict[str, float]:
    """This process's CPU seconds and peak RSS (bytes), its waited-for children's CPU included, as ``wait4`` counts."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu_user_s": own.ru_utime + children.ru_utime,
        "cpu_system_s": own.ru_stime + children.ru_stime,
        "peak_rss": max(own.ru_maxrss, children.ru_maxrss) * 1024,
    }


def rss_bytes() -> int:
    """Resident set size of this process from /proc/self/statm."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * PAGE_SIZE


def set_rlimit(which: int, value: int, hard: int | None = None) -> None:
    """Lower a resource limit (soft ``value``, hard ``hard`` or the same); 0 means leave it alone."""
    if value > 0:
        resource.setrlimit(which, (value, value if hard is None else hard))


def kill_quietly(pid: int, signum: int = signal.SIGKILL) -> bool:
    """Send a signal; False if the process is already gone."""
    try:
        os.kill(pid, signum)
    except OSError:  # gone, not ours, or not a signal number (EINVAL): never crash the caller's loop
        return False
    return True


def kill_group_quietly(pgid: int, signum: int = signal.SIGKILL) -> bool:
    """Signal a whole process group; False if it is empty."""
    try:
        os.killpg(pgid, signum)
    except OSError:
        return False
    return True


def exit_code_from_status(status: int) -> int:
    """A wait status as Airflow sees it: the exit code, or minus the signal number."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields 3 onwards of ``/proc/<pid>/stat`` (``fields[0]`` is field 3, the state); None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read()
    except OSError:
        return None
    return text[text.rfind(b")") + 2 :].split()  # the name in parentheses may hold spaces


def stat_memory(pid: int) -> tuple[int, int] | None:
    """``(page faults, RSS bytes)`` of a process from ``/proc/<pid>/stat``: counters, no page walk.

    Faults are minor plus major faults of the whole process since it was forked (a child starts
    at zero); each maps at most one new private page (without huge pages), a copy-on-write
    copy included. ``None`` when the process is gone.
    """
    fields = _stat_fields(pid)
    if fields is None:
        return None
    try:
        faults = int(fields[7]) + int(fields[9])  # minflt, majflt (fields 10 and 12 of proc(5))
        rss_pages = int(fields[21])  # field 24
    except (IndexError, ValueError):
        return None
    return faults, rss_pages * PAGE_SIZE


def zombie_status(pid: int, parent: int) -> int | None:
    """The wait status of ``pid`` if it is a zombie child of ``parent`` nobody reaped yet, else None.

    Lets a process that is not the parent learn how a process ended while its parent is stopped:
    the kernel keeps the status (field 52, Linux 3.5+) until the parent waits. It shows the real
    value only to a reader allowed to ptrace-read the process (same uid, dumpable); others read 0.
    A zombie's pid cannot be reused, and the parent check rules out an unrelated process.
    """
    fields = _stat_fields(pid)
    try:
        if fields is None or fields[0] != b"Z" or int(fields[1]) != parent:
            return None
        return int(fields[49])
    except (IndexError, ValueError):
        return None
