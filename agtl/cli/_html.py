"""`agtl report --html`: one self-contained page with the tables and a timeline per execution.

Charts are drawn with plotly; its JavaScript is embedded, so the page works offline.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agtl.cli._common import CliError, money
from agtl.reporting import aggregate

_COLORS = {
    "queue wait": "#c7c7c7",
    "prefill / first token": "#f2a541",
    "decode": "#3c8dbc",
    "no output": "#e07b7b",
}


def write_html(records: Sequence[Mapping[str, Any]], path: Path) -> None:
    try:
        import plotly.graph_objects as go
        import plotly.io
    except ImportError:
        raise CliError("--html needs plotly", "pip install plotly") from None
    timeline = _timeline(records, go)
    chart = plotly.io.to_html(timeline, include_plotlyjs=True, full_html=False, div_id="timeline")
    page = _PAGE.format(
        count=len(records),
        table=_table(records),
        chart=chart,
    )
    path.write_text(page, encoding="utf-8")


def _timeline(records: Sequence[Mapping[str, Any]], go: Any) -> Any:
    figure = go.Figure()
    seen: set[str] = set()
    labels = []
    for number, record in enumerate(records, start=1):
        label = f"#{number} {record['status']}"
        labels.append(label)
        for call in record["summary"]["llm_calls"]:
            for name, start, end in _segments(call):
                figure.add_trace(
                    go.Bar(
                        x=[end - start],
                        base=[start],
                        y=[label],
                        orientation="h",
                        name=name,
                        legendgroup=name,
                        showlegend=name not in seen,
                        marker_color=_COLORS[name],
                        hovertemplate=f"{name}: %{{base:.3f}}s + %{{x:.3f}}s"
                        f"<extra>{call['model']}<br>{record['execution_id']}</extra>",
                    )
                )
                seen.add(name)
        events = record.get("events") or []
        if events:
            figure.add_trace(
                go.Scatter(
                    x=[e["elapsed"] for e in events],
                    y=[label] * len(events),
                    mode="markers",
                    marker={"symbol": "line-ns-open", "size": 10, "color": "#333"},
                    name="events",
                    legendgroup="events",
                    showlegend="events" not in seen,
                    text=[e["type"] for e in events],
                    hovertemplate="%{text} at %{x:.3f}s<extra></extra>",
                )
            )
            seen.add("events")
        if record.get("cancel"):
            figure.add_trace(
                go.Scatter(
                    x=[record["cancel"]["at"]],
                    y=[label],
                    mode="markers",
                    marker={"symbol": "x", "size": 14, "color": "#d62728"},
                    name="cancel point",
                    legendgroup="cancel",
                    showlegend="cancel" not in seen,
                    text=[f"{record['cancel']['source']}: {record['cancel']['reason']}"],
                    hovertemplate="%{text} at %{x:.3f}s<extra></extra>",
                )
            )
            seen.add("cancel")
    figure.update_layout(
        barmode="overlay",
        height=max(240, 42 * len(labels) + 120),
        xaxis_title="seconds since the execution started",
        yaxis={"categoryorder": "array", "categoryarray": labels[::-1]},
        margin={"l": 120, "r": 20, "t": 60, "b": 50},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
    )
    return figure


def _segments(call: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    start, end = float(call["started_at"]), float(call["ended_at"])
    details = call.get("details") or {}
    queue = float(details.get("queue_wait") or 0.0)
    ttft = call.get("time_to_first_token")
    segments = []
    if queue > 0:
        segments.append(("queue wait", start, start + queue))
    if ttft is None:
        segments.append(("no output", start + queue, end))
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
</style></head>
<body>
<h1>agtl report</h1>
<p>{count} executions. Times are seconds; percentiles are p50 / p90 / p99.</p>
<table id="models">
<tr><th>provider/model</th><th>runs</th><th>succeeded</th><th>canceled</th><th>failed</th>
<th>tokens in / out</th><th>cost</th><th>duration</th><th>time to first token</th></tr>
{table}
</table>
<h2>Timeline of each execution</h2>
<p>Queue wait, prompt processing until the first token, decoding, events (ticks) and the
point where a cancel landed (&times;).</p>
{chart}
</body></html>
"""
