"""Starts no thread at import; a C-level ``pthread_atfork`` handler starts one in the parent at each fork.

No wrapper of ``os.register_at_fork`` sees it: only a real fork does (the probe's test fork), and
its module is then found by probing the round's modules apart. The thread is a bare pthread
running ``pause()``, started from the handler through ctypes (glibc's ``__register_atfork``, what
``pthread_atfork`` is built on).
"""

import ctypes

_libc = ctypes.CDLL(None)
_PAUSE = ctypes.cast(_libc.pause, ctypes.c_void_p)


def _start_native_thread() -> None:
    thread_id = ctypes.c_ulong()
    _libc.pthread_create(ctypes.byref(thread_id), None, _PAUSE, None)


_AFTER_IN_PARENT = ctypes.CFUNCTYPE(None)(_start_native_thread)
_libc.__register_atfork(None, _AFTER_IN_PARENT, None, None)
