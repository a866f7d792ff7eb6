"""Starts a child process at import and leaves it running."""

import subprocess

HELPER = subprocess.Popen(["sleep", "60"])
