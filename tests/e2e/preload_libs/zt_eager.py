"""A well-behaved library named in ``preload_modules``: loaded when a forker generation starts."""

import time

time.sleep(0.05)

READY = True
