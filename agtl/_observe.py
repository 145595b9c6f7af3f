"""The telemetry hook: one process-wide observer, ``None`` unless one is installed.

The core tells the observer when an execution, an LLM call or a tool call starts and ends, and
hands it the frozen records (Result, call summary, tool call record) it already makes. What
the observer does with them (OpenTelemetry spans and metrics, in :mod:`agtl.otel`) is its own
business. With no observer the cost is one global read per execution: the execution, its
calls and its tool calls then carry :data:`NO_TRACE`, whose methods do nothing.

What travels through the core is a :class:`Trace` value (an observer and its handle for one
execution, call or tool call), never the observer and a bare handle side by side.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

__all__ = [
    "NO_TRACE",
    "Observer",
    "Trace",
    "current",
    "install",
    "trace_execution",
    "workflow_name",
]


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

    def guardrail_started(self, parent: Any, name: str, stage: str) -> Any: ...

    def guardrail_finished(self, handle: Any, record: Any) -> None:
        """``record`` is the :class:`~agtl.GuardrailRecord` the summary keeps."""


_observer: Observer | None = None


def current() -> Observer | None:
    return _observer


def install(observer: Observer | None) -> None:
    """Set (or, with ``None``, remove) the process-wide observer."""
    global _observer
    _observer = observer


class Trace:
    """One traced execution, LLM call or tool call: the observer and its handle for it.

    With no observer (:data:`NO_TRACE`) every method does nothing and a child is
    :data:`NO_TRACE` too, so the core never asks whether telemetry is on.
    """

    __slots__ = ("_handle", "_observer")

    def __init__(self, observer: Observer | None, handle: Any = None) -> None:
        self._observer = observer
        self._handle = handle

    def call(self, provider: str, request: Any) -> Trace:
        """The trace of an LLM call of this execution."""
        if self._observer is None:
            return self
        return Trace(self._observer, self._observer.call_started(self._handle, provider, request))

    def tool(self, name: str, call_id: str | None, arguments: Any) -> Trace:
        """The trace of a tool call of this execution."""
        if self._observer is None:
            return self
        return Trace(
            self._observer, self._observer.tool_started(self._handle, name, call_id, arguments)
        )

    def guardrail(self, name: str, stage: str) -> Trace:
        """The trace of a guardrail's run on this call's (or execution's) text."""
        if self._observer is None:
            return self
        return Trace(self._observer, self._observer.guardrail_started(self._handle, name, stage))

    def activate(self) -> Any:
        """Make this current for the code that runs inside it; a token for :meth:`deactivate`."""
        return None if self._observer is None else self._observer.activate(self._handle)

    def deactivate(self, token: Any) -> None:
        if self._observer is not None:
            self._observer.deactivate(token)

    def execution_finished(self, result: Any) -> None:
        if self._observer is not None:
            self._observer.execution_finished(self._handle, result)

    def call_finished(self, summary: Any, text: str) -> None:
        if self._observer is not None:
            self._observer.call_finished(self._handle, summary, text)

    def tool_finished(self, record: Any) -> None:
        if self._observer is not None:
            self._observer.tool_finished(self._handle, record)

    def guardrail_finished(self, record: Any) -> None:
        if self._observer is not None:
            self._observer.guardrail_finished(self._handle, record)


#: The trace of anything while no observer is installed: every method does nothing.
NO_TRACE: Final = Trace(None)


def trace_execution(execution_id: str, workflow: str | None, streaming: bool) -> Trace:
    """The trace of an execution of the workflow named ``workflow`` that starts now:
    :data:`NO_TRACE` unless an observer is installed (the one global read per execution)."""
    observer = _observer
    if observer is None:
        return NO_TRACE
    name = workflow or "workflow"
    return Trace(observer, observer.execution_started(execution_id, name, streaming))


def workflow_name(workflow: object) -> str:
    """The workflow's qualified name (a partial's function's), for telemetry and reports."""
    target = getattr(workflow, "func", workflow)
    return str(getattr(target, "__qualname__", None) or type(target).__name__)
