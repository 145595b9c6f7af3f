"""`agtl a2a-serve`: a workflow as an A2A agent, driven by the A2A SDK's own client against a
real server process (scripted provider): the card, a streamed task, input-required and the
answer, tasks/cancel that stops the model, a failure, and resubscribing to a running task."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from a2a.client import create_client
from a2a.helpers.proto_helpers import new_text_message
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskState,
)

from tests.local import free_port, listening_agtl

ROOT = Path(__file__).resolve().parents[2]
FLOWS = "tests/serve/flows.py"
DEADLINE = 60


@pytest.fixture
def a2a_server(request: pytest.FixtureRequest) -> Iterator[str]:
    port = free_port()
    target = getattr(request, "param", "talk")
    with listening_agtl("a2a-serve", f"{FLOWS}:{target}", "--port", str(port)):
        yield f"http://127.0.0.1:{port}/"


def _ask(text: str, task_id: str | None = None, context_id: str | None = None) -> Any:
    return SendMessageRequest(
        message=new_text_message(text, role=Role.ROLE_USER, task_id=task_id, context_id=context_id)
    )


async def _events(stream: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in stream]


def _states(events: list[Any]) -> list[int]:
    found = []
    for event in events:
        if event.HasField("task"):
            found.append(event.task.status.state)
        elif event.HasField("status_update"):
            found.append(event.status_update.status.state)
    return found


def _artifact_text(events: list[Any], name: str) -> str:
    return "".join(
        part.text
        for event in events
        if event.HasField("artifact_update") and event.artifact_update.artifact.name == name
        for part in event.artifact_update.artifact.parts
    )


def test_a_task_streams_its_text_and_completes_with_the_value(a2a_server: str) -> None:
    async def go() -> None:
        client = await create_client(a2a_server)
        try:
            events = await asyncio.wait_for(_events(client.send_message(_ask("hi"))), DEADLINE)
        finally:
            await client.close()
        assert _states(events)[0] == TaskState.TASK_STATE_SUBMITTED
        assert TaskState.TASK_STATE_WORKING in _states(events)
        assert _states(events)[-1] == TaskState.TASK_STATE_COMPLETED
        assert _artifact_text(events, "reply") == "Hello from the server."
        assert _artifact_text(events, "value") == "Hello from the server."

    asyncio.run(go())


def test_the_agent_card_names_the_workflow(a2a_server: str) -> None:
    with urllib.request.urlopen(f"{a2a_server}.well-known/agent-card.json", timeout=30) as got:
        card = json.loads(got.read())
    assert card["name"] == "talk"
    assert card["capabilities"]["streaming"] is True
    assert [skill["id"] for skill in card["skills"]] == ["talk"]
    [interface] = card["supportedInterfaces"]
    assert interface["url"] == a2a_server
    assert interface["protocolBinding"] == "JSONRPC"


@pytest.mark.parametrize("a2a_server", ["asks"], indirect=True)
def test_a_question_makes_the_task_input_required_and_the_answer_resumes_it(
    a2a_server: str,
) -> None:
    async def go() -> None:
        client = await create_client(a2a_server)
        try:
            first = await asyncio.wait_for(_events(client.send_message(_ask("go"))), DEADLINE)
            assert _states(first)[-1] == TaskState.TASK_STATE_INPUT_REQUIRED
            asked = first[-1].status_update
            assert asked.status.message.parts[0].text == "Which city?"
            answer = _ask("Lyon", task_id=asked.task_id, context_id=asked.context_id)
            second = await asyncio.wait_for(_events(client.send_message(answer)), DEADLINE)
        finally:
            await client.close()
        assert _states(second)[-1] == TaskState.TASK_STATE_COMPLETED
        assert _artifact_text(second, "value") == "Lyon"
        assert _artifact_text(second, "reply") == "You chose Lyon."

    asyncio.run(go())


@pytest.mark.parametrize("a2a_server", ["tell"], indirect=True)
def test_resubscribe_resumes_the_stream_and_tasks_cancel_stops_the_model(a2a_server: str) -> None:
    async def go() -> None:
        client = await create_client(a2a_server)
        try:
            stream: Any = client.send_message(_ask("slow story"))
            task_id, chunks = "", 0
            async for event in stream:
                if event.HasField("task"):
                    task_id = event.task.id
                if event.HasField("artifact_update"):
                    chunks += 1
                    if chunks == 5:
                        break
            await stream.aclose()  # the client went away; the task goes on
            assert task_id
            resumed: Any = client.subscribe(SubscribeToTaskRequest(id=task_id))
            more = 0
            async for event in resumed:
                if event.HasField("artifact_update"):
                    more += 1
                    if more == 3:
                        break
            await resumed.aclose()
            assert more == 3  # the stream picked up again
            canceled = await asyncio.wait_for(
                client.cancel_task(CancelTaskRequest(id=task_id)), DEADLINE
            )
        finally:
            await client.close()
        assert canceled.status.state == TaskState.TASK_STATE_CANCELED
        said = canceled.status.message.parts[0].text
        assert said == "cancelled by the A2A client (tasks/cancel)"

    asyncio.run(go())


@pytest.mark.parametrize("a2a_server", ["boom"], indirect=True)
def test_a_failed_execution_is_a_failed_task_saying_why(a2a_server: str) -> None:
    async def go() -> None:
        client = await create_client(a2a_server)
        try:
            events = await asyncio.wait_for(_events(client.send_message(_ask("x"))), DEADLINE)
        finally:
            await client.close()
        assert _states(events)[-1] == TaskState.TASK_STATE_FAILED
        reason = events[-1].status_update.status.message.parts[0].text
        assert reason.startswith("ValueError: cannot handle")

    asyncio.run(go())
