"""`agtl run FILE.py:FUNCTION`: run a user's workflow, show its events live, then the summary."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import trio

import agtl
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
    streaming = inspect.isasyncgenfunction(workflow)
    if not streaming:
        return await provider.simple_execution(workflow, timeout=args.timeout).result()  # type: ignore[no-any-return]
    async with provider.streaming_execution(workflow, timeout=args.timeout) as execution:
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
        record["value"] = _jsonable(result.value)
        print(json.dumps(record, indent=2))
    else:
        out.print()
        out.print(summary_table([(args.target, result)]))
        if result.error is not None:
            out.print(f"[red]failed:[/] {type(result.error).__name__}: {result.error}")
        elif result.value is not None:
            out.print(f"[green]value:[/] {result.value!r}"[:2000])
    return EXIT_CODES[result.status]


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
