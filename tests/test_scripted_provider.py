"""agtl.testing.ScriptedProvider: the scripted backend users write their own tests with."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import agtl
from agtl import Session, Status, StopReason
from agtl.testing import Reply, ScriptedProvider, ScriptExhaustedError


async def test_replies_play_in_order_and_calls_are_logged() -> None:
    provider = ScriptedProvider("first reply", Reply(["custom", "-", "chunks"]))

    async def fn(session: Session) -> list[str]:
        a = await session.generate_text(prompt="one", temperature=0.5)
        b = await session.generate_text(messages=[{"role": "user", "content": "two"}])
        return [a.text, b.text]

    result = await provider.simple_execution(fn).result()
    assert result.value == ["first reply", "custom-chunks"]
    assert [c.messages[-1].content for c in provider.calls] == ["one", "two"]
    assert provider.calls[0].options.temperature == 0.5
    assert provider.calls[1].call_index == 1
    assert provider.remaining == 0


async def test_max_tokens_stops_with_length() -> None:
    async def fn(session: Session) -> agtl.TextResult:
        return await session.generate_text(prompt="x", max_tokens=2)

    result = await ScriptedProvider("a b c d").simple_execution(fn).result()
    assert result.value is not None
    assert result.value.text == "a b "
    assert result.value.stop_reason is StopReason.LENGTH
    assert result.value.usage.output_tokens == 2


async def test_exhausted_script_fails_the_call_clearly() -> None:
    async def fn(session: Session) -> None:
        await session.generate_text(prompt="x")

    result = await ScriptedProvider().simple_execution(fn).result()
    assert result.status is Status.FAILED
    assert isinstance(result.error, ScriptExhaustedError)
    assert "no reply left for call #1" in str(result.error)


async def test_delays_run_on_the_trio_clock(autojump_clock: Any) -> None:
    provider = ScriptedProvider(Reply("a b c", delay=2, first_delay=5))

    async def fn(session: Session) -> agtl.TextResult:
        return await session.generate_text(prompt="x")

    result = await provider.simple_execution(fn).result()
    assert result.value is not None
    assert result.value.time_to_first_token == pytest.approx(5)
    assert trio.current_time() == pytest.approx(9)
    call = result.summary.llm_calls[0]
    assert call.output_tokens_per_second == pytest.approx(2 / 4)


async def test_respond_function_and_reported_usage() -> None:
    usage = agtl.Usage(10, 3, provenance=agtl.Provenance.PROVIDER)
    provider = ScriptedProvider(respond=lambda request: Reply(request.model, usage=usage))

    async def fn(session: Session) -> agtl.TextResult:
        return await session.generate_text(prompt="x", model="echo-me")

    result = await provider.simple_execution(fn).result()
    assert result.value is not None
    assert result.value.text == "echo-me"
    assert result.value.usage == usage
    with pytest.raises(agtl.InvalidArgumentError, match="respond"):
        ScriptedProvider("a", respond=lambda r: Reply("b"))


async def test_breaking_out_of_a_stream_stops_the_call() -> None:
    provider = ScriptedProvider("a b c d e")

    async def fn(session: Session) -> str:
        async with session.stream_text(prompt="x") as stream:
            async for delta in stream:
                if delta.strip() == "b":
                    break
        return stream.text

    result = await provider.simple_execution(fn).result()
    assert result.value == "a b "
    call = result.summary.llm_calls[0]
    assert call.stop_reason is StopReason.CANCELLED
    assert call.usage.output_tokens == 2
