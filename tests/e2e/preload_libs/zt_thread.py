"""Starts a thread at import: forking a process with it could deadlock, so it must be rejected."""

import threading

_stop = threading.Event()
threading.Thread(target=_stop.wait, name="zt-thread", daemon=True).start()
