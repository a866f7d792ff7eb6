"""Signals read from a Linux ``signalfd``, each with the pid of whoever sent it.

Why not ``signal.set_wakeup_fd``: it says which signal came, not from whom. A parse worker runs DAG
code as the zygote's own uid and can signal the gateway; SIGTERM from the container runtime must
drain the zygote, the same SIGTERM from a worker must not. The signals are blocked (threads inherit
the mask, so this happens before any thread exists) and read from the fd in the gateway's one loop.
A child started with ``posix_spawn`` must be given an empty mask (``setsigmask=()``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import struct
from collections.abc import Iterable
from dataclasses import dataclass

_SIGINFO_SIZE = 128
_SIGINFO_HEAD = struct.Struct("=IiiII")  # ssi_signo, ssi_errno, ssi_code, ssi_pid, ssi_uid
_SIGSET_WORDS = 16  # glibc's sigset_t: 1024 bits in unsigned longs
_MAX_ANCESTRY = 64


@dataclass(frozen=True)
class Delivery:
    signum: int
    sender_pid: int
    sender_uid: int


class SignalSource:
    """A non-blocking fd that becomes readable when one of ``signums`` is pending."""

    def __init__(self, signums: Iterable[int]) -> None:
        wanted = set(signums)
        signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
        self.fd = _signalfd(wanted)

    def fileno(self) -> int:
        return self.fd

    def read(self) -> list[Delivery]:
        """Every signal pending now (the same signal sent twice may arrive once)."""
        try:
            data = os.read(self.fd, _SIGINFO_SIZE * 64)
        except (BlockingIOError, InterruptedError):
            return []
        deliveries = []
        for offset in range(0, len(data) - _SIGINFO_SIZE + 1, _SIGINFO_SIZE):
            signo, _, _, pid, uid = _SIGINFO_HEAD.unpack_from(data, offset)
            deliveries.append(Delivery(signo, pid, uid))
        return deliveries

    def close(self) -> None:
        os.close(self.fd)


def _signalfd(signums: set[int]) -> int:
    mask = (ctypes.c_ulong * _SIGSET_WORDS)()
    bits = ctypes.sizeof(ctypes.c_ulong) * 8
    for signum in signums:
        mask[(signum - 1) // bits] |= 1 << ((signum - 1) % bits)
    libc = ctypes.CDLL(None, use_errno=True)
    fd: int = libc.signalfd(-1, ctypes.byref(mask), os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"signalfd: {os.strerror(err)}")
    return fd


def is_descendant(pid: int, ancestor: int) -> bool:
    """True if ``pid`` is a (grand)child of ``ancestor`` now; False if unknown or gone."""
    for _ in range(_MAX_ANCESTRY):
        parent = _parent_of(pid)
        if parent is None or parent <= 1:
            return False
        if parent == ancestor:
            return True
        pid = parent
    return False


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces and parentheses
    return int(fields[1]) if len(fields) > 1 else None
