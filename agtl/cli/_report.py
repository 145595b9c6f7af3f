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
    html_path = Path(args.html) if args.html else None
    if html_path is not None and not html_path.parent.is_dir():
        raise CliError(
            f"cannot write {html_path}: no such directory {html_path.parent}",
            "create it first, or pick another path for --html",
        )
    records, skipped = JsonlSink.read(path)
    if not records:
        raise CliError(
            f"{path} holds no execution records", "is it a file written by --log-summaries?"
        )
    from rich.table import Table

    out = console()
    out.print(f"[bold]{len(records)} executions in {path}[/]")
    # One small table per provider/model, figures down the side: it fits any terminal width
    # (eleven columns side by side did not fit 80, and rich squeezed the headers).
    for report in aggregate(records):
        table = Table(title=report.model, title_justify="left", show_header=False)
        table.add_column("figure", style="dim", no_wrap=True)
        table.add_column("value")
        tokens = f"{report.input_tokens} / {report.output_tokens}"
        if report.unknown_usage:
            tokens += f" ({report.unknown_usage} with unknown usage)"
        statuses = ", ".join(
            f"{report.by_status.get(status, 0)} {status}"
            for status in ("succeeded", "canceled", "failed")
        )
        for figure, value in (
            ("executions", f"{report.executions} ({statuses})"),
            ("tokens in / out", tokens),
            ("LLM cost", money(report.cost)),
            ("other cost", money(report.other_cost) if report.other_cost else "-"),
            ("total cost", money(report.total_cost)),
            ("duration p50 / p90 / p99", _seconds(report.duration)),
            ("TTFT p50 / p90 / p99", _seconds(report.time_to_first_token)),
        ):
            table.add_row(figure, value)
        out.print(table)
    if skipped:
        out.print(f"[yellow]{skipped} unreadable line(s) skipped (a write cut short by a crash?)")
    if html_path is not None:
        from agtl.cli._html import write_html

        write_html(records, html_path)
        out.print(f"wrote {html_path}")
    return 0


def _seconds(values: Mapping[str, float]) -> str:
    if not values:
        return "-"
    return " / ".join(f"{values[k]:.2f}" for k in ("p50", "p90", "p99")) + " s"
