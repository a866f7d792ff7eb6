"""Raises at import: it can never be loaded."""

raise RuntimeError("zt_raises refuses to be imported")
