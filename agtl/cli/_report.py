"""`agtl report PATH`: aggregates of a JSON-lines summary sink, per provider/model."""

from __future__ import annotations

import argparse
import asyncio
import gc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agtl.cli._common import CliError, console, money
from agtl.cli._temporal import address_of, connect
from agtl.reporting import JsonlSink, aggregate, record_of


def run(args: argparse.Namespace) -> int:
    if (args.path is None) == (args.temporal is None):
        raise CliError(
            "give a summary file or --temporal ADDRESS (one of them)",
            "e.g. agtl report runs.jsonl, or agtl report --temporal 127.0.0.1:7233",
        )
    html_path = Path(args.html) if args.html else None
    if html_path is not None and not html_path.parent.is_dir():
        raise CliError(
            f"cannot write {html_path}: no such directory {html_path.parent}",
            "create it first, or pick another path for --html",
        )
    if args.temporal is not None:
        records, where = _from_temporal(args)
        source, skipped = f"Temporal at {where}", 0
        if not records:
            raise CliError(f"no finished agtl executions on {source}", "run some with agtl worker")
    else:
        path = Path(args.path)
        if not path.is_file():
            raise CliError(f"no such summary file: {path}", "write one with --log-summaries PATH")
        source = str(path)
        records, skipped = JsonlSink.read(path)
        if not records:
            raise CliError(
                f"{path} holds no execution records", "is it a file written by --log-summaries?"
            )
    from rich.table import Table

    out = console()
    out.print(f"[bold]{len(records)} executions in {source}[/]", highlight=False)
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


def _from_temporal(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """The records of the finished agtl executions on a Temporal server, and its address."""
    try:
        from temporalio.service import RPCError

        from agtl import temporal
    except ImportError:
        raise CliError("--temporal needs its extra", "pip install 'agtl[temporal]'") from None

    async def gather() -> tuple[list[dict[str, Any]], str]:
        client = await connect(args.temporal, args.namespace, args.profile)
        try:
            results = await temporal.gather(client, query=args.query)
        except RPCError as error:
            raise CliError(f"Temporal refused the list: {error}", "check --query") from None
        where = address_of(client)
        # Drop the SDK's native client before the loop closes (temporalio/sdk-python#300).
        del client
        gc.collect()
        return [record_of(result) for result in results], where

    return asyncio.run(gather())


def _seconds(values: Mapping[str, float]) -> str:
    if not values:
        return "-"
    return " / ".join(f"{values[k]:.2f}" for k in ("p50", "p90", "p99")) + " s"
