"""Protocol version and size limits (SPEC.md, "Limits")."""

from __future__ import annotations

PROTOCOL_VERSION = 1
"""Bumped on any incompatible change to frames, types or fields."""

MAX_FRAME = 4 * 1024 * 1024
"""Largest encoded message, in bytes."""

MAX_DATA = 1024 * 1024
"""Largest ``data`` payload of one ``input``/``output`` message; relays chunk below it."""

MAX_STR = 16 * 1024
"""Longest string (paths, messages, tracebacks summaries)."""

MAX_ID = 64
"""Longest request id."""

MAX_CONTAINER = 65_536
"""Most entries in one array or map."""

MAX_DEPTH = 8
"""Deepest nesting of maps/arrays inside a ``map``-typed field."""

LENGTH_PREFIX = 4
"""Bytes of the big-endian length prefix used on stream transports."""
