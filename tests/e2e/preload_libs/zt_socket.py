"""Opens a socket at import and keeps it: every worker would share it, so it must be rejected."""

import socket

CONNECTION = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
