"""agtl as an MCP server: each workflow a tool, each call an execution.

:func:`serve_workflows` builds an MCP server (the SDK's ``MCPServer``) on the current trio
run. A workflow ``async def fn(session, question: str, ...)`` becomes a tool whose input
schema comes from the parameters after the session, as ``@agtl.tool`` derives it (the
same parameters, type hints and docstring). A call runs the workflow as an execution of its
own, in a nursery that lives as long as the server, so the client's cancel reaches it as a
cancel *signal*: the execution ends ``canceled`` with source ``signal`` and a reason naming
the MCP client, and its Result is recorded like any other. A streaming workflow's events go
to the client as progress notifications (the text of text events, else the event's type).
The tool result carries the value (as text, and as structured content with a short summary:
status, tokens, cost, duration); a failed execution is a tool error saying why.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import typing
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Final

import trio
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, TextContent

from agtl import _entry as entry
from agtl._jsonable import jsonable
from agtl._observe import workflow_name
from agtl._tool_loop import TextPart
from agtl.errors import InvalidArgumentError
from agtl.provider import Provider
from agtl.result import Result
from agtl.signals import CancelSignal
from agtl.tools import tool as make_tool
from agtl.validation import type_name

__all__ = ["serve_workflows"]

#: How long a cancelled call waits for its execution's Result before it gives up on it.
CANCEL_GRACE: Final = 10.0
_TEXT_EVENTS: Final = frozenset({"text", "delta", "chunk", "token"})


@contextlib.asynccontextmanager
async def serve_workflows(
    workflows: Sequence[Callable[..., Any]], provider: Provider, *, name: str = "agtl"
) -> AsyncIterator[MCPServer]:
    """An MCP server offering ``workflows`` as tools, run on ``provider``; its executions run
    in a nursery of this block. Run it with ``await server.run_stdio_async()`` (or the SDK's
    streamable HTTP app) inside the block."""
    if not isinstance(provider, Provider):
        raise InvalidArgumentError(
            "provider", f"must be an agtl Provider, not {type_name(provider)}"
        )
    server: MCPServer = MCPServer(name)
    async with trio.open_nursery() as nursery:
        for workflow in workflows:
            entry.check(workflow)
            tool_fn, described = _tool_for(workflow, provider, nursery)
            server.add_tool(tool_fn, name=described.name, description=described.description)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


def _tool_for(
    workflow: Callable[..., Any], provider: Provider, nursery: trio.Nursery
) -> tuple[Callable[..., Any], Any]:
    """The function the SDK calls for ``workflow``'s tool, and its agtl description."""
    target = inspect.unwrap(getattr(workflow, "func", workflow))
    described = make_tool(_as_plain(target), name=workflow_name(workflow).rsplit(".", 1)[-1])
    streaming = entry.is_streaming(workflow)
    parameters = list(inspect.signature(target).parameters.values())[1:]  # after the session

    async def call(ctx: Context, **arguments: Any) -> CallToolResult:
        kwargs = described.validate(arguments)  # as agtl.tool checks a model's arguments
        signal = CancelSignal()
        if streaming:

            async def events(session: Any) -> AsyncIterator[Any]:
                async with contextlib.aclosing(workflow(session, **kwargs)) as stream:
                    async for event in stream:
                        yield event

            execution: Any = provider.streaming_execution(events, signal=signal)
        else:

            async def run(session: Any) -> Any:
                return await workflow(session, **kwargs)

            execution = provider.simple_execution(run, signal=signal)
        nursery.start_soon(execution.result)  # a child of the server, not of this request
        try:
            while not execution.started:  # its task was just spawned: it runs next
                await trio.lowlevel.checkpoint()
            if streaming:
                await _report(execution, ctx)
            result: Result[Any] = await execution.result()
        except trio.Cancelled:
            signal.cancel(f"cancelled by the MCP client {_client(ctx)}")
            with trio.move_on_after(CANCEL_GRACE, shield=True):
                await execution.result()
            raise
        return _tool_result(result)

    call.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context),
            *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parameters),
        ],
        return_annotation=CallToolResult,
    )
    return call, described


def _as_plain(target: Callable[..., Any]) -> Callable[..., Any]:
    """The workflow's parameters after the session, on a stand-in ``@agtl.tool`` reads for
    the schema and the checks (never called): a workflow's session need not be annotated."""
    signature = inspect.signature(target)
    kept = list(signature.parameters.values())[1:]
    hints = {
        k: v
        for k, v in typing.get_type_hints(target).items()
        if k in {p.name for p in kept} or k == "return"
    }

    async def plain(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("never called")

    plain.__signature__ = signature.replace(parameters=kept)  # type: ignore[attr-defined]
    plain.__doc__ = target.__doc__
    plain.__name__ = target.__name__
    plain.__annotations__ = hints
    plain.__module__ = target.__module__
    return plain


async def _report(execution: Any, ctx: Context) -> None:
    """A streaming execution's events as progress notifications, numbered."""
    count = 0
    async for event in execution.stream():
        if event.is_terminal:
            continue
        count += 1
        data = event.data
        if isinstance(data, TextPart):
            message = data.text
        elif event.type in _TEXT_EVENTS and isinstance(data, str):
            message = data
        else:
            message = event.type
        await ctx.report_progress(count, None, message)


def _client(ctx: Context) -> str:
    params = ctx.request_context.session.client_params
    info = None if params is None else params.client_info
    if info is None:
        return "(unnamed)"
    return f"{info.name} {info.version}".strip()


def _tool_result(result: Result[Any]) -> CallToolResult:
    summary = result.summary
    usage = summary.total_usage
    short = {
        "status": result.status.value,
        "execution_id": result.execution_id,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cost": None if summary.total_cost is None else str(summary.total_cost),
        "duration": summary.duration,
    }
    if result.succeeded:
        value = jsonable(result.value)
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            structured_content={"value": value, "summary": short},
        )
    if result.cancel is not None:
        why = f"canceled: {result.cancel.reason or 'no reason given'}"
    else:
        why = f"failed: {type(result.error).__name__}: {result.error}"
    return CallToolResult(
        content=[TextContent(type="text", text=why)],
        structured_content={"value": None, "summary": short},
        is_error=True,
    )
