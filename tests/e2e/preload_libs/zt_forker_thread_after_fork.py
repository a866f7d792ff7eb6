"""Registers a hook that starts a thread in the parent after each fork, only when imported by the forker.

Its probe (a child of the forker) registers nothing, so it passes verification, test fork
included: the case the forker's own fork-safety check must still catch, retiring the generation
(``tests/e2e/test_forker_faults.py``). ``zt_thread_after_fork`` does the same everywhere, and its
probe rejects it.
"""

import os
import threading

with open(f"/proc/{os.getppid()}/cmdline", "rb") as _cmdline:
    if b"zygote.gateway.main" in _cmdline.read():
        os.register_at_fork(
            after_in_parent=lambda: threading.Thread(target=threading.Event().wait, daemon=True).start()
        )
