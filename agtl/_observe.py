"""The telemetry hook: one process-wide observer, ``None`` unless one is installed.

The core tells the observer when an execution, an LLM call or a tool call starts and ends, and
hands it the frozen records (Result, call summary, tool call record) it already makes. What
the observer does with them (OpenTelemetry spans and metrics, in :mod:`agtl.otel`) is its own
business. With no observer the cost is one global read per execution, call and tool call.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Observer", "current", "install"]


class Observer(Protocol):
    """What the core reports. ``Any`` handles are the observer's own (spans, say)."""

    def execution_started(self, execution_id: str, workflow: str, streaming: bool) -> Any: ...

    def activate(self, handle: Any) -> Any:
        """Make ``handle`` current for code the execution or tool runs; a token to undo it."""

    def deactivate(self, token: Any) -> None: ...

    def execution_finished(self, handle: Any, result: Any) -> None:
        """``result`` is the execution's frozen :class:`~agtl.Result`."""

    def call_started(self, parent: Any, provider: str, request: Any) -> Any:
        """``request`` is the call's :class:`~agtl.GenerationRequest`."""

    def call_finished(self, handle: Any, summary: Any, text: str) -> None:
        """``summary`` is the call's :class:`~agtl.LLMCallSummary`; ``text`` what it said."""

    def tool_started(self, parent: Any, name: str, call_id: str | None, arguments: Any) -> Any: ...

    def tool_finished(self, handle: Any, record: Any) -> None:
        """``record`` is the :class:`~agtl.ToolCall` the summary keeps."""


_observer: Observer | None = None


def current() -> Observer | None:
    return _observer


def install(observer: Observer | None) -> None:
    """Set (or, with ``None``, remove) the process-wide observer."""
    global _observer
    _observer = observer
