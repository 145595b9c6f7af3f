"""Events: what a workflow reports while it runs, stamped with timing metrics."""

from __future__ import annotations

from typing import Any, Final

import attrs

__all__ = ["COMPLETE", "ERROR", "RESERVED_EVENT_TYPES", "Event", "EventMetrics"]

COMPLETE: Final = "complete"
ERROR: Final = "error"
RESERVED_EVENT_TYPES: Final = frozenset({COMPLETE, ERROR})


@attrs.frozen
class EventMetrics:
    """When an event happened.

    ``timestamp`` is wall-clock (Unix seconds); ``elapsed`` is seconds since the execution
    started and ``delta`` seconds since the previous event (for the first event, since the
    start), both on trio's clock; ``seq`` numbers events of one execution from 0.
    """

    timestamp: float
    elapsed: float
    delta: float
    seq: int


@attrs.frozen
class Event:
    """One event of an execution. ``complete`` and ``error`` are the terminal types."""

    type: str
    data: Any
    metrics: EventMetrics

    @property
    def is_terminal(self) -> bool:
        return self.type in RESERVED_EVENT_TYPES
