"""Which structlog logger agtl uses when the application did not hand it one, and the
per-execution logger that binds the execution's context only when a line is emitted.

agtl never calls ``structlog.configure()``. Once the application has configured structlog,
agtl logs through it (``structlog.get_logger("agtl")``). Before that, structlog's
out-of-the-box setup would print every debug line to stdout, so agtl falls back to a logger
of its own that writes warnings and errors to stderr only.
"""

from __future__ import annotations

import logging
import sys
from functools import cache
from typing import Any, cast

import structlog

from agtl._vocabulary import Logger

__all__ = ["ExecutionLogger", "default_logger"]


def default_logger() -> Logger:
    if structlog.is_configured():
        return cast(Logger, structlog.get_logger("agtl"))
    return _warnings_to_stderr()


@cache
def _warnings_to_stderr() -> Logger:
    # A concrete filtering logger, not structlog's lazy proxy: binding a proxy resolves the
    # configuration every time, and every execution binds its context.
    make: Any = structlog.make_filtering_bound_logger(logging.WARNING)
    logger = make(
        structlog.PrintLogger(sys.stderr),
        [
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        {"logger_name": "agtl"},
    )
    return cast(Logger, logger)


class ExecutionLogger:
    """The provider's logger with one execution's context (``execution_id``, ``provider``).

    Binding costs more than everything else an execution logs, and most executions emit no
    line that passes the logger's level, so the context is bound on the first line that
    could be emitted. A logger whose class fixes its level (structlog's filtering loggers)
    drops debug lines here, without binding.
    """

    __slots__ = ("_base", "_bound", "_context", "_debug")

    def __init__(self, base: Logger, **context: Any) -> None:
        self._base = base
        self._context = context
        self._bound: Logger | None = None
        is_enabled_for = getattr(type(base), "is_enabled_for", None)
        self._debug = is_enabled_for is None or bool(is_enabled_for(base, logging.DEBUG))

    def _logger(self) -> Logger:
        bound = self._bound
        if bound is None:
            bound = self._bound = self._base.bind(**self._context)
        return bound

    def bind(self, **context: Any) -> Logger:
        return self._logger().bind(**context)

    def debug(self, event: str, **fields: Any) -> Any:
        if self._debug:
            return self._logger().debug(event, **fields)
        return None

    def info(self, event: str, **fields: Any) -> Any:
        return self._logger().info(event, **fields)

    def warning(self, event: str, **fields: Any) -> Any:
        return self._logger().warning(event, **fields)

    def error(self, event: str, **fields: Any) -> Any:
        return self._logger().error(event, **fields)

    def exception(self, event: str, **fields: Any) -> Any:
        return self._logger().exception(event, **fields)
