"""`agtl report --html`: one self-contained page with the tables and a timeline per execution.

The timeline is inline SVG drawn here, with native hover titles: no script and no charting
library, so the page works offline and weighs kilobytes, not the megabytes an embedded
charting bundle costs.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from agtl.cli._common import CliError, money
from agtl.reporting import aggregate

_COLORS: Final = {
    "queue wait": "#c7c7c7",
    "prefill / first token": "#f2a541",
    "decode": "#3c8dbc",
    "asked for tools": "#9467bd",
    "tool": "#2ca02c",
    "no output": "#e07b7b",
}
_LABEL_WIDTH: Final = 430  # room for "#12 research canceled (timeout)  provider/model"
_PLOT_WIDTH: Final = 640
_ROW: Final = 26
_TOP: Final = 40  # the legend
_AXIS: Final = 36
#: Events of one kind in one row are drawn as one tick per this many pixels (with their count
#: in the tooltip), so a page grows with executions and event kinds, not with events.
_BUCKET_PX: Final = 16


def write_html(records: Sequence[Mapping[str, Any]], path: Path) -> None:
    page = _PAGE.format(count=len(records), table=_table(records), chart=_timeline(records))
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise CliError(
            f"cannot write {path}: {exc.strerror or exc}",
            "check that its directory exists and is writable",
        ) from None


def _label(number: int, record: Mapping[str, Any]) -> str:
    status = record["status"]
    if record.get("cancel"):
        status += f" ({record['cancel']['source']})"
    workflow = record["summary"].get("workflow") or "workflow"
    return f"#{number} {workflow} {status}  {record.get('model') or 'no LLM call'}"


def _timeline(records: Sequence[Mapping[str, Any]]) -> str:
    span = max((float(r["summary"]["duration"]) for r in records), default=0.0) or 1.0
    height = _TOP + _ROW * len(records) + _AXIS

    def x(seconds: float) -> float:
        return _LABEL_WIDTH + max(0.0, seconds) / span * _PLOT_WIDTH

    width = _LABEL_WIDTH + _PLOT_WIDTH + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="{width}"'
        f' height="{height}" font-size="12" font-family="system-ui, sans-serif">'
    ]
    legend_x = 10
    for name, color in [*_COLORS.items(), ("cancel point", "#d62728")]:
        parts.append(
            f'<rect x="{legend_x}" y="12" width="12" height="12" fill="{color}"/>'
            f'<text x="{legend_x + 16}" y="22">{html.escape(name)}</text>'
        )
        legend_x += 28 + 7 * len(name)
    for row, record in enumerate(records):
        top = _TOP + row * _ROW
        parts.append(_row(row, record, top, x))
    axis_y = _TOP + _ROW * len(records) + 4
    parts.append(
        f'<line x1="{_LABEL_WIDTH}" x2="{_LABEL_WIDTH + _PLOT_WIDTH}" y1="{axis_y}" y2="{axis_y}"'
        ' stroke="#999"/>'
    )
    for tick in range(6):
        seconds = span * tick / 5
        at = x(seconds)
        parts.append(
            f'<line x1="{at:.1f}" x2="{at:.1f}" y1="{axis_y}" y2="{axis_y + 4}" stroke="#999"/>'
            f'<text x="{at:.1f}" y="{axis_y + 16}" text-anchor="middle">{seconds:.2f}s</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _row(row: int, record: Mapping[str, Any], top: float, x: Any) -> str:
    """One execution: its label, its calls' phases, its tool calls, its events, its cancel."""
    middle = top + _ROW / 2
    parts = [
        f'<text x="{_LABEL_WIDTH - 8}" y="{middle + 4}" text-anchor="end">'
        f"{html.escape(_label(row + 1, record))}<title>{record['execution_id']}</title></text>"
    ]
    summary = record["summary"]
    for call in summary["llm_calls"]:
        for name, start, end in _segments(call):
            tip = f"{name}: {start:.3f}s + {end - start:.3f}s, call #{call['index']}"
            parts.append(_bar(x(start), x(end), top + 5, _ROW - 10, name, tip))
    for tool in summary.get("tool_calls") or []:
        start = float(tool.get("at") or 0.0)
        took = float(tool.get("duration") or 0.0)
        tip = f"tool {tool['name']}: {tool['status']}, {took * 1000:.0f} ms at {start:.3f}s"
        parts.append(_bar(x(start), x(start + took), top + 14, _ROW - 18, "tool", tip))
    parts.extend(_ticks(record.get("events") or [], top, x))
    cancel = record.get("cancel")
    if cancel:
        at = x(float(cancel["at"]))
        reason = cancel.get("reason") or "no reason given"
        tip = f"cancel point: {cancel['source']} ({reason}) at {float(cancel['at']):.3f}s"
        parts.append(
            f'<text x="{at:.1f}" y="{middle + 5}" text-anchor="middle" font-size="16"'
            f' fill="#d62728">&#215;<title>{html.escape(tip)}</title></text>'
        )
    return "".join(parts)


def _bar(left: float, right: float, y: float, height: float, name: str, tip: str) -> str:
    return (
        f'<rect x="{left:.1f}" y="{y:.0f}" width="{max(1.0, right - left):.1f}"'
        f' height="{height:.0f}" fill="{_COLORS[name]}"><title>{html.escape(tip)}</title></rect>'
    )


def _ticks(events: Sequence[Mapping[str, Any]], top: float, x: Any) -> list[str]:
    """Each kind of event as one path of ticks, one per bucket of pixels, with its count."""
    kinds: dict[str, dict[int, int]] = {}
    times: dict[str, list[float]] = {}
    for event in events:
        at = float(event["elapsed"])
        buckets = kinds.setdefault(str(event["type"]), {})
        bucket = int((x(at) - _LABEL_WIDTH) // _BUCKET_PX)
        buckets[bucket] = buckets.get(bucket, 0) + 1
        times.setdefault(str(event["type"]), []).append(at)
    parts = []
    for kind, buckets in kinds.items():
        moves = "".join(
            f"M{_LABEL_WIDTH + bucket * _BUCKET_PX + _BUCKET_PX / 2:.0f} {top + 3:.0f}v{_ROW - 6}"
            for bucket in sorted(buckets)
        )
        seen = times[kind]
        tip = f"{len(seen)} {kind} event(s), {min(seen):.3f}s to {max(seen):.3f}s"
        parts.append(
            f'<path d="{moves}" stroke="#333" stroke-width="1">'
            f"<title>{html.escape(tip)}</title></path>"
        )
    return parts


def _segments(call: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    start, end = float(call["started_at"]), float(call["ended_at"])
    details = call.get("details") or {}
    queue = float(details.get("queue_wait") or 0.0)
    ttft = call.get("time_to_first_token")
    segments = []
    if queue > 0:
        segments.append(("queue wait", start, start + queue))
    if ttft is None:
        # A call that answered with tool calls and no text did its job: not "no output".
        asked = call.get("stop_reason") == "tool_calls"
        segments.append(("asked for tools" if asked else "no output", start + queue, end))
    else:
        first = start + float(ttft)
        segments.append(("prefill / first token", start + queue, first))
        segments.append(("decode", first, end))
    return [s for s in segments if s[2] > s[1]]


def _table(records: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for report in aggregate(records):

        def pct(values: Mapping[str, float]) -> str:
            return " / ".join(f"{values[k]:.2f}" for k in ("p50", "p90", "p99")) if values else "-"

        cells = [
            report.model,
            report.executions,
            report.by_status.get("succeeded", 0),
            report.by_status.get("canceled", 0),
            report.by_status.get("failed", 0),
            f"{report.input_tokens} / {report.output_tokens}",
            money(report.cost),
            money(report.other_cost) if report.other_cost else "-",
            money(report.total_cost),
            pct(report.duration),
            pct(report.time_to_first_token),
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return "\n".join(rows)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>agtl report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ background: #f3f3f3; }}
svg rect:hover, svg line:hover {{ opacity: 0.7; }}
</style></head>
<body>
<h1>agtl report</h1>
<p>{count} executions. Times are seconds; percentiles are p50 / p90 / p99.</p>
<table id="models">
<tr><th>provider/model</th><th>runs</th><th>succeeded</th><th>canceled</th><th>failed</th>
<th>tokens in / out</th><th>LLM cost</th><th>other cost</th><th>total cost</th>
<th>duration</th><th>time to first token</th></tr>
{table}
</table>
<h2>Timeline of each execution</h2>
<p>Each row is an execution (its workflow, how it ended, its model): queue wait, prompt
processing until the first token, decoding, a call that asked for tools, the tool calls (the
thin green bars), events (ticks, one per kind and span of time) and the point where a cancel
landed (&times;). Hover for details.</p>
{chart}
</body></html>
"""
