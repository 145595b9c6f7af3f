"""What goes over the wire: events as server-sent events, Results as JSON records."""

from __future__ import annotations

import json
from typing import Any

from agtl._jsonable import jsonable
from agtl.events import Event
from agtl.result import Result

__all__ = ["end_event", "event_message", "result_record", "sse"]


def sse(event_id: int, event_type: str, data: Any) -> bytes:
    """One server-sent event; ``data`` as one line of JSON."""
    payload = json.dumps(jsonable(data), ensure_ascii=False, separators=(",", ":"))
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
        "value": jsonable(result.value),
        "error": jsonable(result.error),
        "cancel": None if result.cancel is None else result.cancel.to_dict(),
        "partial": None if result.partial is None else result.partial.text,
    }
    if summary:
        record["summary"] = result.summary.to_dict()
    return record
