"""What goes over the wire: events as server-sent events, Results as JSON records."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

from agtl.events import Event
from agtl.result import Result

__all__ = ["end_event", "result_record", "sse", "to_json"]


def to_json(value: Any) -> Any:
    """A JSON-safe copy of ``value``: Decimals as strings, exceptions as type and message."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, BaseException):
        return {"type": type(value).__name__, "message": str(value)}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    if attrs.has(type(value)):
        return to_json(attrs.asdict(value, recurse=False))
    return repr(value)


def sse(event_id: int, event_type: str, data: Any) -> bytes:
    """One server-sent event; ``data`` as one line of JSON."""
    payload = json.dumps(to_json(data), ensure_ascii=False, separators=(",", ":"))
    return f"id: {event_id}\nevent: {event_type}\ndata: {payload}\n\n".encode()


def event_message(event: Event) -> bytes:
    return sse(event.metrics.seq, event.type, event.data)


def end_event(event_id: int, result: Result[Any]) -> bytes:
    """The last message of a stream: how the execution ended (its id follows the events')."""
    return sse(event_id, "end", result_record(result, summary=False))


def result_record(result: Result[Any] | None, *, summary: bool = True) -> dict[str, Any]:
    """``GET /executions/{id}``: the outcome (``status`` null while it runs) and summary."""
    if result is None:
        return {"status": None, "value": None, "error": None, "cancel": None, "summary": None}
    record: dict[str, Any] = {
        "status": result.status.value,
        "value": to_json(result.value),
        "error": to_json(result.error),
        "cancel": None
        if result.cancel is None
        else {
            "source": result.cancel.source.value,
            "reason": result.cancel.reason,
            "at": result.cancel.at,
        },
        "partial": None if result.partial is None else result.partial.text,
    }
    if summary:
        record["summary"] = result.summary.to_dict()
    return record
