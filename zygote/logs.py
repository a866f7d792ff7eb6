"""structlog set-up shared by the zygote's processes: JSON when not a TTY, key-value otherwise."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def configure_logging(component: str, *, verbose: bool = False) -> None:
    """Route structlog to stderr; every event carries ``component`` (gateway, forker, client)."""
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False) if sys.stderr.isatty() else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,  # log.exception(...) events carry their traceback
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG if verbose else logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(component=component)


def get_logger(name: str) -> Any:
    """A structlog logger; a function so nothing is configured at import time."""
    return structlog.get_logger(name)
