"""Workflows the serve tests start over HTTP, on a scripted provider (deterministic timing)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import trio

import agtl
from agtl.testing import Reply, ScriptedProvider


def _reply(request: agtl.GenerationRequest) -> Reply:
    prompt = request.messages[-1].content
    first = request.messages[0]
    if first.role is agtl.Role.SYSTEM and first.content == "You plan.":  # the agent team
        if request.messages[-1].role is agtl.Role.TOOL:
            return Reply(f"planner: {prompt}")
        return Reply("", tool_calls=[agtl.ToolCallRequest("p1", "helper", {"task": prompt})])
    if first.role is agtl.Role.SYSTEM and first.content == "You help.":
        return Reply(f"helper on {prompt}")
    if request.messages[-1].role is agtl.Role.TOOL:
        return Reply(f"the tool said: {prompt}")
    if prompt == "pay" and request.tools:
        return Reply("", tool_calls=[agtl.ToolCallRequest("t1", "transfer", {"amount": 500})])
    if prompt.startswith("slow"):
        return Reply(["word "] * 2000, delay=0.01)
    if prompt.startswith("medium"):
        return Reply(["word "] * 100, delay=0.01)
    return Reply(["Hello ", "from ", "the ", "server."], delay=0.01)


#: `agtl serve` uses a served file's own provider when it defines one.
agtl_provider = ScriptedProvider(respond=_reply)


async def talk(session: agtl.Session, input: Any) -> AsyncIterator[agtl.Event]:
    prompt = str(input.get("prompt", "hi")) if isinstance(input, dict) else "hi"
    async with session.stream_text(prompt=prompt) as reply:
        async for piece in reply:
            yield session.emit("text", piece)
    yield await session.done(reply.text)


async def guarded(session: agtl.Session, input: Any) -> AsyncIterator[agtl.Event]:
    """A long reply that an output guardrail stops after 30 characters."""
    limit = agtl.guardrails.max_length(30)
    async with session.stream_text(prompt="slow", output_guardrails=[limit]) as reply:
        async for piece in reply:
            yield session.emit("text", piece)
    yield await session.done(reply.text)


async def ticks(session: agtl.Session, input: Any) -> AsyncIterator[agtl.Event]:
    """``input`` events, one every 20 ms: a stream long enough to drop and resume."""
    for n in range(int(input)):
        await trio.sleep(0.02)
        yield session.emit("tick", n)
    yield await session.done(int(input))


async def add(session: agtl.Session, input: Any) -> int:
    """A coroutine: its value becomes the terminal event."""
    await trio.lowlevel.checkpoint()
    return int(input["a"]) + int(input["b"])


async def boom(session: agtl.Session, input: Any) -> None:
    """A workflow that raises: its error goes to the client as data."""
    await trio.lowlevel.checkpoint()
    raise ValueError(f"cannot handle {input!r}")


@dataclasses.dataclass
class Answer:
    """A typed value: it crosses the wire in its JSON form."""

    text: str
    when: dt.date
    cost: Decimal


async def typed(session: agtl.Session, input: Any) -> AsyncIterator[agtl.Event]:
    reply = await session.generate_text(prompt="hi")
    yield session.emit("odd", object())  # no JSON form: it arrives saying so
    yield await session.done(Answer(reply.text, dt.date(2026, 12, 4), Decimal("0.25")))


async def session_only(session: agtl.Session) -> str:
    """The getting-started shape, fn(session): served too."""
    return (await session.generate_text(prompt="hi")).text


async def counted(session: agtl.Session, input: Any) -> AsyncIterator[agtl.Event]:
    """Text events "w0 " ... "w{n-1} ", 20 ms apart: what arrives shows any gap or repeat."""
    count = int(input.get("n", 150)) if isinstance(input, dict) else 150
    for i in range(count):
        await trio.sleep(0.02)
        yield session.emit("text", f"w{i} ")
    yield await session.done(count)


@agtl.tool(needs_approval=True)
async def transfer(amount: int) -> str:
    """Send money (a person approves it first)."""
    return f"sent {amount}"


async def pay(session: agtl.Session, input: Any) -> str:
    """A tool call that waits for approval over HTTP (the scripted model asks for it)."""
    reply = await session.generate_text(prompt="pay", tools=[transfer])
    return reply.text


async def question(session: agtl.Session, input: Any) -> str:
    """Asks a person (over HTTP) for a number."""
    count = await session.request_input("How many?", output_type=int)
    return f"{count * 2} halves"


helper = agtl.Agent("helper", "You help.")
#: An agent team served as a workflow: the planner asks the helper (a child execution).
team = agtl.Agent("planner", "You plan.", tools=[helper.as_tool()]).workflow


async def chat(session: agtl.Session, input: Any) -> AsyncIterator[agtl.Event]:
    """Served as an OpenAI chat model: the request's messages and options, the reply streamed."""
    last = input["messages"][-1]["content"]
    options = {k: v for k, v in input["options"].items() if k in ("temperature", "max_tokens")}
    async with session.stream_text(prompt=last, **options) as reply:
        async for piece in reply:
            yield session.emit("text", piece)
    yield await session.done(reply.text)


async def asks(session: agtl.Session, input: Any) -> AsyncIterator[agtl.Event]:
    """Asks the person which city, then says it back (A2A's input-required)."""
    city = await session.request_input("Which city?", str)
    yield session.emit("text", f"You chose {city}.")
    yield await session.done(city)


async def tell(session: agtl.Session, input: Any) -> AsyncIterator[agtl.Event]:
    """Streams the reply to its input, a text (A2A's message)."""
    async with session.stream_text(prompt=str(input)) as reply:
        async for piece in reply:
            yield session.emit("text", piece)
    yield await session.done(reply.text)
