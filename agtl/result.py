"""The one frozen outcome of an execution."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import attrs

from agtl._vocabulary import CancelInfo, CancelSource, Partial, Status
from agtl.errors import ExecutionCancelled, ExecutionFailed
from agtl.events import Event
from agtl.summary import Summary

__all__ = ["CancelInfo", "CancelSource", "Partial", "Result", "Status"]

T = TypeVar("T")


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
