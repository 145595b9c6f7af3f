"""`agtl run FILE.py:FUNCTION`: run a user's workflow, show its events live, then the summary."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import signal
import sys
import traceback
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

import agtl
from agtl._jsonable import jsonable
from agtl._sync import INTERRUPT_REASON
from agtl.cli._common import CliError, console, make_provider, summary_table
from agtl.reporting import record_of

EXIT_CODES = {agtl.Status.SUCCEEDED: 0, agtl.Status.CANCELED: 3, agtl.Status.FAILED: 4}
_TEXT_EVENTS = {"chunk", "delta", "text", "token"}


def load_workflow(target: str) -> Any:
    path_text, sep, name = target.rpartition(":")
    if not sep or not path_text or not name:
        raise CliError(
            f"expected FILE.py:FUNCTION, got {target!r}",
            "e.g. agtl run examples/quickstart.py:answer",
        )
    path = Path(path_text)
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(f"agtl_run_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise CliError(f"cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    workflow = getattr(module, name, None)
    if workflow is None:
        found = [
            n
            for n, v in vars(module).items()
            if inspect.iscoroutinefunction(v) or inspect.isasyncgenfunction(v)
        ]
        raise CliError(f"{path} has no {name!r}", f"workflows in it: {', '.join(found) or 'none'}")
    if not (inspect.iscoroutinefunction(workflow) or inspect.isasyncgenfunction(workflow)):
        raise CliError(f"{name!r} is not an async function or async generator taking a session")
    return workflow


async def _execute(
    provider: Any, workflow: Any, args: argparse.Namespace, out: Any
) -> agtl.Result[Any]:
    """Run the workflow; the first Ctrl-C cancels it (source ``signal``), a second one exits."""
    interrupted = agtl.CancelSignal()
    # The receiver is in place before the workflow starts: no Ctrl-C falls between the two.
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_ctrl_c, signals, interrupted)
            result = await _execute_once(provider, workflow, args, out, interrupted)
            nursery.cancel_scope.cancel()
    return result


async def _watch_ctrl_c(signals: AsyncIterator[int], interrupted: agtl.CancelSignal) -> None:
    async for _ in signals:
        if interrupted.cancelled:
            raise KeyboardInterrupt
        interrupted.cancel(INTERRUPT_REASON)


async def _execute_once(
    provider: Any,
    workflow: Any,
    args: argparse.Namespace,
    out: Any,
    interrupted: agtl.CancelSignal,
) -> agtl.Result[Any]:
    streaming = inspect.isasyncgenfunction(workflow)
    options = {"timeout": args.timeout, "signal": interrupted}
    if not streaming:
        return await provider.simple_execution(workflow, **options).result()  # type: ignore[no-any-return]
    async with provider.streaming_execution(workflow, **options) as execution:
        async for event in execution.stream():
            if args.json:
                continue
            if event.type in _TEXT_EVENTS and isinstance(event.data, str):
                out.print(event.data, end="", style="cyan")
            elif not event.is_terminal:
                stamp = f"[{event.metrics.seq} +{event.metrics.elapsed:.2f}s]"
                out.print(f"\n[dim]{stamp}[/] {event.type}: {event.data!r}")
        return await execution.result()  # type: ignore[no-any-return]


def run(args: argparse.Namespace) -> int:
    workflow = load_workflow(args.target)
    out = console()
    provider = make_provider(args)
    try:
        result = trio.run(_execute, provider, workflow, args, out)
    finally:
        trio.run(provider.aclose)
    if args.json:
        record = record_of(result)
        record["value"] = jsonable(result.value)
        record["partial_text"] = None if result.partial is None else result.partial.text
        print(json.dumps(record, indent=2))
    else:
        out.print()
        out.print(summary_table([(args.target, result)]))
        if result.error is not None:
            if args.verbose:
                trace = "".join(traceback.format_exception(result.error))
                console(stderr=True).print(trace, markup=False, end="")
            out.print(f"[red]failed:[/] {type(result.error).__name__}: {result.error}")
            if not args.verbose:
                out.print("[dim]run with -v for the traceback[/]")
        elif result.cancel is not None:
            out.print(
                f"[yellow]canceled[/] by {result.cancel.source.value}"
                f" ({result.cancel.reason or 'no reason given'})"
            )
            if result.partial is not None and result.partial.text:
                out.print(f"[yellow]kept:[/] {result.partial.text!r}"[:2000])
        elif result.value is not None:
            out.print(f"[green]value:[/] {result.value!r}"[:2000])
    return EXIT_CODES[result.status]
