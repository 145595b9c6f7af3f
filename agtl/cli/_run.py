"""`agtl run FILE.py:FUNCTION`: run a user's workflow, show its events live, then the summary."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import traceback
from collections.abc import AsyncIterator
from typing import Any

import trio

import agtl
from agtl import _entry as entry
from agtl._jsonable import to_json
from agtl._sync import INTERRUPT_REASON
from agtl.cli._common import CliError, console, provider_for, summary_table, tool_lines
from agtl.cli._options import read_input
from agtl.errors import InvalidArgumentError
from agtl.reporting import record_of

EXIT_CODES = {agtl.Status.SUCCEEDED: 0, agtl.Status.CANCELED: 3, agtl.Status.FAILED: 4}
_TEXT_EVENTS = {"chunk", "delta", "text", "token"}
#: Events the terminal prompts stand in for.
_ASKED = {"approval_requested", "input_requested"}


def load_workflow(target: str) -> Any:
    """The workflow ``FILE.py:FUNCTION`` (or ``package.module:FUNCTION``) names, as serve and
    Temporal load it; a mistake is one line and a hint."""
    try:
        return entry.load(target)
    except InvalidArgumentError as error:
        raise CliError(error.problem, "e.g. agtl run examples/quickstart.py:answer") from None


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
    streaming = entry.is_streaming(workflow)
    options = {"timeout": args.timeout, "signal": interrupted}
    bound = entry.bind(workflow, read_input(args))
    if not streaming:
        execution = provider.simple_execution(bound, **options)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_decide_approvals, execution, args.approve_all)
            nursery.start_soon(_answer_questions, execution)
            result = await execution.result()
            nursery.cancel_scope.cancel()
        return result  # type: ignore[no-any-return]
    async with provider.streaming_execution(bound, **options) as execution:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_decide_approvals, execution, args.approve_all)
            nursery.start_soon(_answer_questions, execution)
            async for event in execution.stream():
                if not args.json and not event.is_terminal and event.type not in _ASKED:
                    _show(out, event)
            nursery.cancel_scope.cancel()
        return await execution.result()  # type: ignore[no-any-return]


async def _answer_questions(execution: Any) -> None:
    """Ask on the terminal each question the workflow asks (``session.request_input``): the
    line typed is JSON if it parses, else the text; one that does not fit asks again; no
    answer (end of input) cancels the execution."""
    err = console(stderr=True)
    async for request in execution.input_requests():
        while True:
            err.print(f"{request.prompt} ", end="", markup=False)
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line:
                err.print()
                execution.cancel("no terminal answer")
                return
            text = line.rstrip("\n")
            problem = _provide(request, text)
            if problem is None:
                break
            err.print(f"{problem}; try again", markup=False, style="red")


def _provide(request: Any, text: str) -> str | None:
    """Answer with the line as JSON if that fits the question, else as the text itself;
    what was wrong with it, if neither fits (``None``: answered, or nothing left to answer)."""
    candidates: list[Any] = [text]
    with contextlib.suppress(ValueError):
        candidates.insert(0, json.loads(text))
    problem = None
    for value in candidates:
        try:
            request.provide(value)
        except InvalidArgumentError as error:
            if error.argument != "value":
                return None  # answered meanwhile, or over: nothing to ask
            problem = error.problem
        else:
            return None
    return problem


async def _decide_approvals(execution: Any, approve_all: bool) -> None:
    """Ask on the terminal about each tool call waiting for approval (``--approve-all``: yes
    to all); no answer (end of input) denies it."""
    err = console(stderr=True)
    async for request in execution.approval_requests():
        arguments = json.dumps(request.arguments, ensure_ascii=False)
        if approve_all:
            err.print(f"approved {request.tool} {arguments} (--approve-all)", markup=False)
            request.approve(by="--approve-all")
            continue
        err.print(f"approve {request.tool} {arguments}? [y/N] ", end="", markup=False)
        answer = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        with contextlib.suppress(InvalidArgumentError):  # decided meanwhile (a timeout)
            if not answer:
                err.print()
                request.deny("no terminal answer", by="terminal")
            elif answer.strip().lower() in ("y", "yes"):
                request.approve(by="terminal")
            else:
                request.deny("denied at the terminal", by="terminal")


def _show(out: Any, event: agtl.Event) -> None:
    """One event as it arrives: text inline, a tool loop's parts in a line each, the rest
    with their sequence number and time."""
    data = event.data
    if isinstance(data, agtl.TextPart):
        out.print(data.text, end="", style="cyan", markup=False)
    elif event.type in _TEXT_EVENTS and isinstance(data, str):
        out.print(data, end="", style="cyan", markup=False)
    elif isinstance(data, agtl.ToolCallStarted):
        request = data.request
        out.print(f"\n[dim]->[/] {request.name}({request.arguments})", markup=True)
    elif isinstance(data, agtl.ToolCallFinished):
        call = data.call
        outcome = call.status.value if call.error is None else f"{call.status.value}: {call.error}"
        took = "" if call.duration is None else f" ({call.duration * 1000:.0f} ms)"
        out.print(f"[dim]<-[/] {call.name} {outcome}{took}")
    elif isinstance(data, agtl.ToolProgress):
        total = "" if data.total is None else f"/{data.total:g}"
        message = f" {data.message}" if data.message else ""
        out.print(f"[dim]..[/] {data.name} {data.progress:g}{total}{message}")
    else:
        stamp = f"[{event.metrics.seq} +{event.metrics.elapsed:.2f}s]"
        out.print(f"\n[dim]{stamp}[/] {event.type}: {data!r}")


def run(args: argparse.Namespace) -> int:
    workflow = load_workflow(args.target)
    out = console()
    provider = provider_for(workflow, args)
    try:
        if args.json:
            # stdout carries one JSON document: what the workflow prints goes to stderr.
            with contextlib.redirect_stdout(sys.stderr):
                result = trio.run(_execute, provider, workflow, args, out)
        else:
            result = trio.run(_execute, provider, workflow, args, out)
    finally:
        trio.run(provider.aclose)
    if args.json:
        record = record_of(result)
        record["value"] = to_json(result.value, "the workflow's value")
        record["partial_text"] = None if result.partial is None else result.partial.text
        print(json.dumps(record, indent=2))
    else:
        out.print()
        out.print(summary_table([(args.target, result)]))
        for line in tool_lines(result.summary):
            out.print(line, markup=False)
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
