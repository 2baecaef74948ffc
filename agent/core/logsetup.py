"""structlog: JSON lines on stdout (journald keeps them), or readable
console lines when stdout is a terminal."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
import structlog.tracebacks


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """`stream`: where lines go; None: sys.stdout as it is at each call (the
    daemons'). Commands whose stdout is their answer log to sys.stderr."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    renderer: structlog.typing.Processor
    if as_json:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    processors: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if as_json:
        # Tracebacks as data, without local variables: those could hold secrets.
        transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        processors.append(structlog.processors.ExceptionRenderer(transformer))
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,  # a reload may change the level
    )
