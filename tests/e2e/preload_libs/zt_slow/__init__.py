"""Slow to import (a stand-in for pandas): the zygote should preload it after one parse."""

import time

time.sleep(0.4)

from zt_slow import helpers  # noqa: E402  (a submodule, reported and preloaded too)

VALUE = helpers.double(21)
