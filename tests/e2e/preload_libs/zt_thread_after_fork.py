"""Starts no thread at import; starts one in the parent after its next fork.

Its import checks in the probe see one thread; the probe's test fork then sees a second one and
blames this module's ``os.register_at_fork`` hook (``thread_after_fork``), so it is never
promoted into the forker, where the next fork would retire the generation.
"""

import os
import threading


def _start_thread() -> None:
    threading.Thread(target=threading.Event().wait, name="zt-after-fork", daemon=True).start()


os.register_at_fork(after_in_parent=_start_thread)
