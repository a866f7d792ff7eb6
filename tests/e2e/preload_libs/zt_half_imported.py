"""Starts a thread, then raises: the import fails, and the process it failed in is no longer clean."""

import threading

_stop = threading.Event()
threading.Thread(target=_stop.wait, name="zt-half-imported", daemon=True).start()
raise ImportError("zt_half_imported gave up half way")
