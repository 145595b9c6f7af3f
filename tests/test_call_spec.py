"""Every entry that makes a model call takes every per-call option, checks it the same way,
and honours it: a call is one value (``CallSpec``) whichever entry built it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pydantic
import pytest
import trio

import agtl
from agtl import Session
from agtl.testing import Reply, ScriptedProvider


class City(pydantic.BaseModel):
    name: str


async def _drain(stream: Any) -> None:
    async with stream:
        async for _ in stream:
            pass


@agtl.tool
async def lookup(city: str) -> str:
    """Look a city up.

    Args:
        city: The city.
    """
    return city


#: Each public entry of a model call, given the same keyword arguments.
ENTRIES: dict[str, Callable[[Session, dict[str, Any]], Any]] = {
    "generate_text": lambda s, kw: s.generate_text(prompt="hi", **kw),
    "stream_text": lambda s, kw: _drain(s.stream_text(prompt="hi", **kw)),
    "generate_object": lambda s, kw: s.generate_object(output_type=City, prompt="hi", **kw),
    "generate_text with tools": lambda s, kw: s.generate_text(
        prompt="hi", tools=[lookup], max_steps=2, **kw
    ),
}
PER_CALL = ("timeout", "first_token_timeout", "stall_timeout")


@pytest.mark.parametrize("option", PER_CALL)
@pytest.mark.parametrize("entry", list(ENTRIES))
async def test_every_entry_checks_every_per_call_deadline_the_same_way(
    entry: str, option: str
) -> None:
    provider = ScriptedProvider("unused")

    async def workflow(session: Session) -> None:
        await ENTRIES[entry](session, {option: -2})

    result = await provider.simple_execution(workflow).result()
    assert isinstance(result.error, agtl.InvalidArgumentError), result
    assert result.error.argument == option
    assert str(result.error) == f"{option}: must be >= 0 seconds, got -2"
    assert provider.calls == ()  # refused before anything was sent


@pytest.mark.parametrize("entry", list(ENTRIES))
async def test_every_entry_honours_the_first_token_deadline(
    entry: str, autojump_clock: trio.abc.Clock
) -> None:
    provider = ScriptedProvider(Reply('{"name": "Paris"}', first_delay=5.0))

    async def workflow(session: Session) -> None:
        await ENTRIES[entry](session, {"first_token_timeout": 1.0})

    result = await provider.simple_execution(workflow).result()
    assert isinstance(result.error, agtl.FirstTokenTimeoutError), result
    assert result.summary.llm_calls[0].stop_reason is agtl.StopReason.ERROR


async def test_the_provider_entry_takes_the_per_call_deadlines_too() -> None:
    provider = ScriptedProvider(Reply("late", first_delay=5.0))
    bad: dict[str, Any] = {"first_token_timeout": -2, "stall_timeout": -2}
    for option, value in bad.items():
        with pytest.raises(agtl.InvalidArgumentError, match=option):
            provider.generate_text("hi", **{option: value})
    result = await provider.generate_text("hi", first_token_timeout=0.05)
    assert isinstance(result.error, agtl.FirstTokenTimeoutError)


async def test_typed_output_in_a_conversation_keeps_every_attempt_as_turns(
    autojump_clock: trio.abc.Clock,
) -> None:
    provider = ScriptedProvider(Reply('{"nom": "Paris"}'), Reply('{"name": "Paris"}'))
    conversation = agtl.Conversation(system="Answer in JSON.")

    async def workflow(session: Session) -> City:
        city: City = await session.generate_object(
            output_type=City, prompt="Which city?", conversation=conversation
        )
        return city

    result = await provider.simple_execution(workflow).result()
    assert result.unwrap() == City(name="Paris")
    turns = [(e.role.value, e.content[:25]) for e in conversation.entries]
    assert turns == [
        ("system", "Answer in JSON."),
        ("user", "Which city?"),
        ("assistant", '{"nom": "Paris"}'),
        ("user", "That reply is not valid: "),
        ("assistant", '{"name": "Paris"}'),
    ]
    # The second call was sent the whole conversation, the correction last.
    assert provider.calls[1].messages[-1].content.startswith("That reply is not valid")
