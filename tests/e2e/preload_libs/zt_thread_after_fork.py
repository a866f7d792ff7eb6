"""Starts no thread at import; starts one in the parent after its next fork.

Its probe and its promotion in the forker both see one thread. The first worker the forker forks
afterwards leaves a thread in the forker: the case where a thread appears in the forker later,
which must retire the generation rather than refuse every spawn until a reload.
"""

import os
import threading


def _start_thread() -> None:
    threading.Thread(target=threading.Event().wait, name="zt-after-fork", daemon=True).start()


os.register_at_fork(after_in_parent=_start_thread)
