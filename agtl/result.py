"""The one frozen outcome of an execution."""

from __future__ import annotations

import enum
from typing import Any, Generic, TypeVar

import attrs

from agtl.errors import ExecutionCancelled, ExecutionFailed
from agtl.events import Event
from agtl.summary import Summary

__all__ = ["CancelInfo", "CancelSource", "Partial", "Result", "Status"]

T = TypeVar("T")


class Status(enum.StrEnum):
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"
    FAILED = "failed"


class CancelSource(enum.StrEnum):
    """What stopped a canceled execution."""

    HANDLE = "handle"  # execution.cancel(), or leaving its `async with` block early
    SIGNAL = "signal"  # an external CancelSignal (explicit or its deadline)
    TIMEOUT = "timeout"  # the execution's own timeout=
    LIMIT = "limit"  # a UsageLimits budget
    ENCLOSING_SCOPE = "enclosing_scope"  # a cancel scope of the caller; trio.Cancelled propagates


@attrs.frozen
class CancelInfo:
    source: CancelSource
    reason: str | None
    at: float  # seconds since the execution started


@attrs.frozen
class Partial:
    """What a canceled or failed execution produced before it stopped.

    ``text`` is the concatenation of the text deltas that the interrupted LLM call(s) had
    delivered to the workflow (in call order); ``events`` are the events delivered so far.
    """

    text: str
    events: tuple[Event, ...]
    call_indexes: tuple[int, ...] = ()


@attrs.frozen
class Result(Generic[T]):
    """How an execution ended. ``summary`` is always present."""

    execution_id: str
    status: Status
    summary: Summary
    value: T | None = None
    error: BaseException | None = None
    cancel: CancelInfo | None = None
    partial: Partial | None = None
    events: tuple[Event, ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.status is Status.SUCCEEDED

    @property
    def canceled(self) -> bool:
        return self.status is Status.CANCELED

    @property
    def failed(self) -> bool:
        return self.status is Status.FAILED

    def unwrap(self) -> T:
        """The value, or raise :class:`ExecutionCancelled` / :class:`ExecutionFailed`."""
        if self.status is Status.SUCCEEDED:
            return self.value  # type: ignore[return-value]
        partial = self.partial or Partial("", self.events)
        if self.status is Status.CANCELED:
            raise ExecutionCancelled(self.execution_id, partial, self.cancel)
        error = self.error if self.error is not None else RuntimeError("unknown failure")
        raise ExecutionFailed(self.execution_id, error, partial) from error

    def __repr__(self) -> str:
        detail: Any
        if self.status is Status.SUCCEEDED:
            detail = f"value={self.value!r:.60}"
        elif self.status is Status.CANCELED:
            detail = f"cancel={self.cancel!r}"
        else:
            detail = f"error={type(self.error).__name__}({self.error})"
        return f"Result({self.status.value}, {detail}, id={self.execution_id})"
