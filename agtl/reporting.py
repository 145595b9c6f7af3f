"""Summary sinks and reports: every execution's summary as one JSON line, and aggregates.

``provider.with_summary_sink(JsonlSink(path))`` makes every execution of that provider append
its record when its outcome is frozen. Each record is appended under an exclusive ``flock`` and
written to its last byte (a short write is continued), so concurrent writers, in this process
or others, never interleave lines. A line torn by a crash or a full disk is never glued to the
next record: an append that finds the file not ending in a newline starts with one. The torn
line is then skipped (and counted) when reading.
"""

from __future__ import annotations

import fcntl
import json
import os
import statistics
from collections.abc import Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from agtl._vocabulary import SummarySink
from agtl.result import Result

__all__ = ["JsonlSink", "ModelReport", "SummarySink", "aggregate", "append_line", "record_of"]


_MAX_EVENTS = 500


def record_of(result: Result[Any]) -> dict[str, Any]:
    """The JSON-safe record of a finished execution: outcome plus its summary."""
    summary = result.summary.to_dict()
    calls = result.summary.llm_calls
    record: dict[str, Any] = {
        "execution_id": result.execution_id,
        "status": result.status.value,
        "model": calls[0].model_key if calls else None,
        "cancel": None if result.cancel is None else result.cancel.to_dict(),
        "error": None
        if result.error is None
        else {"type": type(result.error).__name__, "message": str(result.error)},
        "partial_chars": None if result.partial is None else len(result.partial.text),
        "event_count": len(result.events),
        # When events happened, for timelines (bounded: long token streams stay small).
        "events": [
            {"type": e.type, "elapsed": e.metrics.elapsed} for e in result.events[:_MAX_EVENTS]
        ],
        "summary": summary,
    }
    return record


class JsonlSink:
    """Appends one JSON line per execution to ``path`` (created if missing)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def write(self, result: Result[Any]) -> None:
        append_line(self.path, json.dumps(record_of(result), ensure_ascii=False))

    @staticmethod
    def read(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], int]:
        """(records, number of unreadable lines skipped)."""
        records: list[dict[str, Any]] = []
        skipped = 0
        with Path(path).open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    skipped += 1
                    continue
                if isinstance(record, dict) and "summary" in record:
                    records.append(record)
                else:
                    skipped += 1
        return records, skipped


def append_line(path: Path, text: str) -> None:
    """Append ``text`` and a newline to ``path`` as one whole line.

    Under an exclusive ``flock`` (other appenders wait; readers do not), so the check of the
    file's last byte and the write are one step. A file that does not end in a newline (a
    line torn by a crash or a short write) gets one first, so the torn line stays alone and
    this record is whole. ``os.write`` may write less than asked (a full disk, a signal): the
    rest is written until every byte is out, or the error is raised.
    """
    data = (text + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)  # closing releases the lock


@attrs.frozen
class ModelReport:
    """Aggregates for one ``provider/model`` (or ``(no LLM call)``)."""

    model: str
    executions: int
    by_status: Mapping[str, int]
    input_tokens: int
    output_tokens: int
    unknown_usage: int  # executions whose token figures were not all known
    cost: Decimal | None  # LLM cost; None when any execution's LLM cost is unknown
    other_cost: Decimal  # what workflows recorded with session.record_cost
    duration: Mapping[str, float]  # p50 / p90 / p99 seconds
    time_to_first_token: Mapping[str, float]

    @property
    def total_cost(self) -> Decimal | None:
        """LLM cost plus the other costs; ``None`` when the LLM cost is unknown."""
        return None if self.cost is None else self.cost + self.other_cost


def aggregate(records: Iterable[Mapping[str, Any]]) -> list[ModelReport]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault(record.get("model") or "(no LLM call)", []).append(record)
    reports = []
    for model, items in sorted(groups.items()):
        by_status: dict[str, int] = {}
        input_tokens = output_tokens = unknown = 0
        cost: Decimal | None = Decimal(0)
        other_cost = Decimal(0)
        durations: list[float] = []
        ttfts: list[float] = []
        for item in items:
            by_status[item["status"]] = by_status.get(item["status"], 0) + 1
            summary = item["summary"]
            usage = summary["total_usage"]
            if usage["input_tokens"] is None or usage["output_tokens"] is None:
                unknown += 1
            input_tokens += usage["input_tokens"] or 0
            output_tokens += usage["output_tokens"] or 0
            cost = (
                None if cost is None or summary["cost"] is None else cost + Decimal(summary["cost"])
            )
            for entry in summary.get("additional_costs") or ():
                other_cost += Decimal(entry["amount"])
            durations.append(float(summary["duration"]))
            first = next(
                (
                    c["time_to_first_token"]
                    for c in summary["llm_calls"]
                    if c["time_to_first_token"]
                ),
                None,
            )
            if first is not None:
                ttfts.append(float(first))
        reports.append(
            ModelReport(
                model=model,
                executions=len(items),
                by_status=by_status,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                unknown_usage=unknown,
                cost=cost,
                other_cost=other_cost,
                duration=_percentiles(durations),
                time_to_first_token=_percentiles(ttfts),
            )
        )
    return reports


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    if len(values) == 1:
        return {"p50": values[0], "p90": values[0], "p99": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98]}
