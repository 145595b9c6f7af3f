"""The one frozen outcome of an execution."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import attrs

from agtl._jsonable import from_json, to_json
from agtl._vocabulary import CancelInfo, CancelSource, Partial, Status
from agtl.errors import ExecutionCancelled, ExecutionFailed, RemoteError
from agtl.events import Event, EventMetrics
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe form; :meth:`from_dict` rebuilds the Result from it.

        The value and event data go out in their JSON form (a pydantic model as its
        ``model_dump(mode="json")``, a dataclass or attrs instance as an object of its fields,
        a datetime as ISO 8601 text, a Decimal as text, bytes as base64, ...); a part with no
        JSON form raises :class:`~agtl.UnserializableValueError` naming where it is. Summary
        records are reports and never fail (a part with no JSON form is written as its repr).
        An error keeps its type name and message.
        """
        partial = self.partial
        return {
            "execution_id": self.execution_id,
            "status": self.status.value,
            "value": to_json(self.value, "value"),
            "error": None if self.error is None else _error_dict(self.error),
            "cancel": None if self.cancel is None else self.cancel.to_dict(),
            "partial": None
            if partial is None
            else {
                "text": partial.text,
                "events": [_event_dict(e, "partial.events") for e in partial.events],
                "call_indexes": list(partial.call_indexes),
                "object": partial.object,  # JSON values already: parsed from the reply
            },
            "events": [_event_dict(e, "events") for e in self.events],
            "summary": self.summary.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, value_type: Any = None) -> Result[Any]:
        """The Result :meth:`to_dict` describes; its error, if any, is a
        :class:`~agtl.RemoteError` with the original's type name and message.

        The value comes back in its JSON form, or, with ``value_type`` (a pydantic model, a
        dataclass, ``list[Item]``, ...), validated back into that type by pydantic: datetimes,
        Decimals, enums, tuples, sets and base64 bytes come back as they were.
        """
        error, cancel, partial = data.get("error"), data.get("cancel"), data.get("partial")
        value = data.get("value")
        if value_type is not None and Status(data["status"]) is Status.SUCCEEDED:
            value = from_json(value, value_type)
        return cls(
            execution_id=data["execution_id"],
            status=Status(data["status"]),
            summary=Summary.from_dict(data["summary"]),
            value=value,
            error=None if error is None else RemoteError(error["type"], error["message"]),
            cancel=None
            if cancel is None
            else CancelInfo(
                CancelSource(cancel["source"]),
                cancel["reason"],
                cancel["at"],
                cancel.get("mode", "hard"),
            ),
            partial=None
            if partial is None
            else Partial(
                partial["text"],
                tuple(_event_from(e) for e in partial["events"]),
                tuple(partial["call_indexes"]),
                partial.get("object"),
            ),
            events=tuple(_event_from(e) for e in data.get("events", ())),
        )

    def format(self) -> str:
        """A readable report: how the execution ended (the cancel's source and reason, or the
        error), then :meth:`Summary.format`."""
        if self.status is Status.CANCELED and self.cancel is not None:
            reason = self.cancel.reason or "no reason given"
            ended = f"canceled by {self.cancel.source.value} ({reason})"
        elif self.status is Status.FAILED and self.error is not None:
            ended = f"failed: {_error_dict(self.error)['type']}: {self.error}"
        else:
            ended = self.status.value
        return f"{ended}\n{self.summary.format()}"

    def __repr__(self) -> str:
        detail: Any
        if self.status is Status.SUCCEEDED:
            detail = f"value={self.value!r:.60}"
        elif self.status is Status.CANCELED:
            detail = f"cancel={self.cancel!r}"
        else:
            detail = f"error={type(self.error).__name__}({self.error})"
        return f"Result({self.status.value}, {detail}, id={self.execution_id})"


def _error_dict(error: BaseException) -> dict[str, str]:
    kind = error.type_name if isinstance(error, RemoteError) else type(error).__name__
    return {"type": kind, "message": str(error)}


def _event_dict(event: Event, where: str) -> dict[str, Any]:
    metrics = event.metrics
    return {
        "type": event.type,
        "data": to_json(event.data, f"{where}[{metrics.seq}].data"),
        "metrics": {
            "timestamp": metrics.timestamp,
            "elapsed": metrics.elapsed,
            "delta": metrics.delta,
            "seq": metrics.seq,
        },
    }


def _event_from(data: Mapping[str, Any]) -> Event:
    return Event(data["type"], data["data"], EventMetrics(**data["metrics"]))
