"""Imports in a worker or a probe (children of the forker) but raises in the forker itself.

A stand-in for a library whose import depends on its surroundings: the forker must reject it
with the traceback summary and stay healthy.
"""

import os

with open(f"/proc/{os.getppid()}/cmdline", "rb") as _cmdline:
    if b"zygote.forker.main" not in _cmdline.read():
        raise RuntimeError("zt_forker_fails: the parent is not a forker")
