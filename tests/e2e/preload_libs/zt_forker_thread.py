"""Starts a thread only when imported by the forker itself (whose parent is the gateway).

Its probe (a child of the forker) sees no thread, so it passes verification: the case the forker
must still catch after the promotion.
"""

import os
import threading

with open(f"/proc/{os.getppid()}/cmdline", "rb") as _cmdline:
    if b"zygote.gateway.main" in _cmdline.read():
        _stop = threading.Event()
        threading.Thread(target=_stop.wait, name="zt-forker-thread", daemon=True).start()
