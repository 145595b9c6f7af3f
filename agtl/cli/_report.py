"""`agtl report PATH`: aggregates of a JSON-lines summary sink, per provider/model."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from agtl.cli._common import CliError, console, money
from agtl.reporting import JsonlSink, aggregate


def run(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.is_file():
        raise CliError(f"no such summary file: {path}", "write one with --log-summaries PATH")
    records, skipped = JsonlSink.read(path)
    if not records:
        raise CliError(
            f"{path} holds no execution records", "is it a file written by --log-summaries?"
        )
    from rich.table import Table

    out = console()
    table = Table(title=f"{len(records)} executions in {path}", title_justify="left")
    table.add_column("provider/model", no_wrap=True)
    for column in (
        "runs",
        "succeeded",
        "canceled",
        "failed",
        "tokens in/out",
        "cost",
        "duration p50/p90/p99",
        "TTFT p50/p90/p99",
    ):
        table.add_column(column)
    for report in aggregate(records):
        tokens = f"{report.input_tokens}/{report.output_tokens}"
        if report.unknown_usage:
            tokens += f" ({report.unknown_usage} unknown)"
        table.add_row(
            report.model,
            str(report.executions),
            str(report.by_status.get("succeeded", 0)),
            str(report.by_status.get("canceled", 0)),
            str(report.by_status.get("failed", 0)),
            tokens,
            money(report.cost),
            _seconds(report.duration),
            _seconds(report.time_to_first_token),
        )
    out.print(table)
    if skipped:
        out.print(f"[yellow]{skipped} unreadable line(s) skipped (a write cut short by a crash?)")
    if args.html:
        from agtl.cli._html import write_html

        write_html(records, Path(args.html))
        out.print(f"wrote {args.html}")
    return 0


def _seconds(values: Mapping[str, float]) -> str:
    if not values:
        return "-"
    return " / ".join(f"{values[k]:.2f}" for k in ("p50", "p90", "p99")) + " s"
