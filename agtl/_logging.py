"""Which structlog logger agtl uses when the application did not hand it one.

agtl never calls ``structlog.configure()``. Once the application has configured structlog,
agtl logs through it (``structlog.get_logger("agtl")``). Before that, structlog's
out-of-the-box setup would print every debug line to stdout, so agtl falls back to a logger
of its own that writes warnings and errors to stderr only.
"""

from __future__ import annotations

import logging
import sys
from functools import cache
from typing import cast

import structlog

from agtl._vocabulary import Logger


def default_logger() -> Logger:
    if structlog.is_configured():
        return cast(Logger, structlog.get_logger("agtl"))
    return _warnings_to_stderr()


@cache
def _warnings_to_stderr() -> Logger:
    logger = structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        logger_name="agtl",
    )
    return cast(Logger, logger)
