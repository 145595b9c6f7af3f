"""agtl.a2a (extra ``agtl[a2a]``): a workflow served as an A2A agent, on the protocol's SDK.

:func:`create_app` builds the ASGI app of an A2A server (``a2a-sdk``): the agent card at
``/.well-known/agent-card.json`` and the JSON-RPC endpoint at ``/``. A message starts a
task, and the task is an execution of the workflow with the message's text (or its data
part) as the input. Its states follow the execution:

- ``working`` while it runs, and its text streams as chunks of the ``reply`` artifact;
- ``input-required`` when it waits for a person (a tool call's approval, or
  ``session.request_input``). The status message says what is asked, and the client's next
  message on the task answers: ``yes``/``approve`` approves, anything else denies with that
  reason, or it is the input's value (JSON if it parses);
- ``completed`` with its value in the ``value`` artifact (text, or data), ``canceled`` with
  the reason, ``failed`` with the error.

``tasks/cancel`` cancels the execution with the reason "cancelled by the A2A client
(tasks/cancel)", and the model stops. Resubscribing to a task resumes its stream: the SDK
keeps the task's events.

The SDK runs on asyncio, so the app runs on an asyncio server (Hypercorn's asyncio worker:
``agtl a2a-serve``), and the executions run on agtl's trio guest run of that loop
(:mod:`agtl.aio`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import attrs
from a2a.helpers.proto_helpers import (
    get_data_parts,
    new_data_part,
    new_task_from_user_message,
    new_text_part,
)
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Part
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT
from starlette.applications import Starlette

from agtl import _entry as entry
from agtl import aio
from agtl._jsonable import jsonable
from agtl._observe import workflow_name
from agtl._tool_loop import TextPart
from agtl.errors import InvalidArgumentError
from agtl.events import Event
from agtl.execution import StreamingExecution
from agtl.provider import Provider
from agtl.result import Result, Status
from agtl.validation import type_name

__all__ = ["WorkflowAgent", "create_app"]

#: The cancel reason of a task cancelled through the protocol.
CANCELLED: Final = "cancelled by the A2A client (tasks/cancel)"
_TEXT_EVENTS: Final = frozenset({"text", "delta", "chunk", "token"})
_YES: Final = frozenset({"y", "yes", "approve", "approved", "ok"})


@attrs.define
class _Running:
    """A task's execution, and where its event stream was left (it outlives an
    ``input-required`` pause)."""

    execution: StreamingExecution[Any]
    events: AsyncIterator[Event]
    chunks: int = 0


class WorkflowAgent(AgentExecutor):
    """The A2A SDK's agent executor for one workflow (see the module's description)."""

    def __init__(self, workflow: Callable[..., Any], provider: Provider) -> None:
        self._workflow = workflow
        self._provider = provider
        self._tasks: dict[str, _Running] = {}

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id, context.context_id
        assert task_id is not None
        assert context_id is not None
        updater = TaskUpdater(event_queue, task_id, context_id)
        running = self._tasks.get(task_id)
        if running is None:
            if context.current_task is None and context.message is not None:
                await event_queue.enqueue_event(new_task_from_user_message(context.message))
            running = self._start(task_id, _input_of(context))
        else:
            _answer(running.execution, context.get_user_input())
        await updater.start_work()
        if not await self._follow(running, updater):
            return  # waiting for the client's answer: the next message resumes it
        result = await aio.result(running.execution)
        self._tasks.pop(task_id, None)
        await _finish(result, updater)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id = context.task_id
        running = None if task_id is None else self._tasks.pop(task_id, None)
        if running is not None:
            running.execution.cancel(CANCELLED)
            with contextlib.suppress(Exception):
                await aio.result(running.execution)
        assert task_id is not None
        assert context.context_id is not None
        updater = TaskUpdater(event_queue, task_id, context.context_id)
        await updater.cancel(updater.new_agent_message([new_text_part(CANCELLED)]))

    def _start(self, task_id: str, value: Any) -> _Running:
        bound = entry.bind(self._workflow, value)
        streaming = entry.is_streaming(self._workflow)

        async def events(session: Any) -> AsyncIterator[Event]:
            if streaming:
                async with contextlib.aclosing(bound(session)) as stream:
                    async for event in stream:
                        yield event
                return
            yield await session.done(await bound(session))

        events.__name__ = events.__qualname__ = workflow_name(self._workflow)
        execution = self._provider.streaming_execution(events)
        running = _Running(execution, aio.events(execution))
        self._tasks[task_id] = running
        return running

    async def _follow(self, running: _Running, updater: TaskUpdater) -> bool:
        """Stream the execution's text as chunks of the reply artifact; ``False`` when it
        stopped to wait for the client (input-required), ``True`` when it ended."""
        async for event in running.events:
            if event.type in ("approval_requested", "input_requested"):
                question = _question(event)
                await updater.requires_input(updater.new_agent_message([new_text_part(question)]))
                return False
            text = _text_of(event)
            if text:
                await updater.add_artifact(
                    [new_text_part(text)],
                    artifact_id="reply",
                    name="reply",
                    append=running.chunks > 0,
                    last_chunk=False,
                )
                running.chunks += 1
        return True


def _input_of(context: RequestContext) -> Any:
    """The workflow's input: the message's data part if it has one, else its text."""
    message = context.message
    if message is not None:
        data = get_data_parts(message.parts)
        if data:
            return data[0]
    return context.get_user_input()


def _answer(execution: StreamingExecution[Any], text: str) -> None:
    """The client's next message answers what the execution waits for."""
    for request in execution.pending_approvals:
        if text.strip().lower() in _YES:
            execution.approve(request.id, by="a2a client")
        else:
            execution.deny(request.id, text.strip() or "denied", by="a2a client")
        return
    for question in execution.pending_inputs:
        value: Any = text
        with contextlib.suppress(ValueError):
            value = json.loads(text)
        try:
            execution.provide_input(question.id, value)
        except InvalidArgumentError:
            execution.provide_input(question.id, text)
        return


def _question(event: Event) -> str:
    data = event.data
    if event.type == "input_requested" and isinstance(data, dict):
        return str(data.get("prompt", "input needed"))
    if isinstance(data, dict):
        arguments = json.dumps(jsonable(data.get("arguments")), ensure_ascii=False)
        return f"approve {data.get('tool')} {arguments}? (yes, or why not)"
    return "input needed"


def _text_of(event: Event) -> str | None:
    data = event.data
    if isinstance(data, TextPart):
        return data.text
    if event.type in _TEXT_EVENTS and isinstance(data, str):
        return data
    return None


async def _finish(result: Result[Any], updater: TaskUpdater) -> None:
    if result.status is Status.SUCCEEDED:
        value = jsonable(result.value)
        part: Part = new_text_part(value) if isinstance(value, str) else new_data_part(value)
        await updater.add_artifact([part], artifact_id="value", name="value", last_chunk=True)
        await updater.complete()
    elif result.status is Status.CANCELED:
        reason = result.cancel.reason if result.cancel is not None else None
        message = updater.new_agent_message([new_text_part(f"canceled: {reason}")])
        await updater.cancel(message)
    else:
        error = f"{type(result.error).__name__}: {result.error}"
        await updater.failed(updater.new_agent_message([new_text_part(error)]))


def create_app(
    workflow: Callable[..., Any],
    provider: Provider,
    *,
    url: str,
    name: str | None = None,
    description: str | None = None,
) -> Starlette:
    """The A2A server of ``workflow`` on ``provider``, reachable at ``url`` (what the agent
    card tells clients)."""
    entry.check(workflow)
    if not isinstance(provider, Provider):
        raise InvalidArgumentError(
            "provider", f"must be an agtl Provider, not {type_name(provider)}"
        )
    label = name or workflow_name(workflow).rsplit(".", 1)[-1]
    about = description or (getattr(workflow, "__doc__", None) or label).strip().splitlines()[0]
    card = AgentCard(
        name=label,
        description=about,
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(
                url=url, protocol_binding="JSONRPC", protocol_version=PROTOCOL_VERSION_CURRENT
            )
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=[AgentSkill(id=label, name=label, description=about, tags=["agtl"])],
    )
    handler = DefaultRequestHandler(
        agent_executor=WorkflowAgent(workflow, provider),
        task_store=InMemoryTaskStore(),
        agent_card=card,
    )
    routes = [*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")]
    return Starlette(routes=routes)
