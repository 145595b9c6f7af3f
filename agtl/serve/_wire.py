"""What goes over the wire: events as server-sent events, Results as JSON records."""

from __future__ import annotations

import json
from typing import Any

import attrs

from agtl._jsonable import jsonable, to_json
from agtl.errors import UnserializableValueError
from agtl.events import Event
from agtl.result import Result

__all__ = ["end_event", "event_message", "result_record", "sse"]


def sse(event_id: int, event_type: str, data: Any) -> bytes:
    """One server-sent event; ``data`` as one line of JSON (data with no JSON form arrives
    as ``{"unserializable": why}``: the stream goes on)."""
    try:
        encoded = to_json(data, "data")
    except UnserializableValueError as exc:
        encoded = {"unserializable": str(exc)}
    payload = json.dumps(encoded, ensure_ascii=False, separators=(",", ":"))
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
    try:
        value = to_json(result.value, "value")
    except UnserializableValueError as exc:
        value = {"unserializable": str(exc)}
    record: dict[str, Any] = {
        "status": result.status.value,
        "value": value,
        "error": jsonable(result.error),
        "cancel": None if result.cancel is None else result.cancel.to_dict(),
        "partial": None if result.partial is None else result.partial.text,
    }
    tripped = result.summary.tripped_guardrail
    if tripped is not None:  # which guardrail stopped a call, and why
        record["guardrail"] = jsonable(attrs.asdict(tripped))
    if summary:
        record["summary"] = result.summary.to_dict()
    return record
