"""FallbackProvider on scripted backends: which errors fall back and which do not, the first
token as the point of no return, every attempt in the call's record with its usage and cost,
the circuit breaker's states, and a cancel in the middle of an attempt."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pydantic
import pytest
import trio

import agtl
from agtl.testing import Reply, ScriptedProvider

DEADLINE = 10
PRICE = agtl.Price(input=Decimal(1), output=Decimal(2))


def scripted(name: str, *replies: Reply) -> ScriptedProvider:
    """A scripted provider answering ``replies`` in order, priced per model ``name``."""
    return (
        ScriptedProvider(*replies)
        .with_default_model(name)
        .with_pricing({name: agtl.Price(input=Decimal(1), output=Decimal(2))})
    )


def down(status: int = 503) -> Reply:
    return Reply(error=agtl.ServerError(f"{status} from the test", status_code=status))


def attempts(call: agtl.LLMCallSummary) -> list[dict[str, Any]]:
    """The call's attempts, as its details list them."""
    found = call.details["attempts"]
    assert isinstance(found, list)
    return found


async def answer(provider: agtl.Provider, **options: Any) -> agtl.Result[Any]:
    async def workflow(session: agtl.Session) -> str:
        return (await session.generate_text(prompt="hello", **options)).text

    with trio.fail_after(DEADLINE):
        return await provider.simple_execution(workflow)


async def test_a_call_that_fails_before_its_first_token_goes_to_the_next_provider() -> None:
    primary = scripted("big", down())
    secondary = scripted("small", Reply("from the second", usage=agtl.Usage(10, 3)))
    result = await answer(primary.with_fallback(secondary))
    assert result.value == "from the second"
    [call] = result.summary.llm_calls
    first, second = attempts(call)
    assert (first["provider"], first["model"], first["outcome"]) == ("scripted", "big", "error")
    assert first["error"].startswith("ServerError: 503 from the test")
    assert (second["model"], second["outcome"]) == ("small", "answered")
    assert call.model == "small"  # the model that answered
    assert [a["outcome"] for a in call.attempts] == ["error", "answered"]
    assert "attempts: scripted/big error" in result.summary.format()
    assert secondary._script.calls[0].model == "small"  # each provider gets its own model
    # The call costs what its attempts cost, each at its own price (the scripted backend
    # counts the prompt of the attempt that failed).
    assert second["cost"] == str(Decimal(10 * 1 + 3 * 2) / 1_000_000)
    assert call.cost == Decimal(first["cost"]) + Decimal(second["cost"])
    assert call.usage.input_tokens == 10 + first["usage"]["input_tokens"]
    assert call.usage.output_tokens == 3


async def test_no_fallback_after_the_first_token_nor_on_an_error_that_says_so() -> None:
    broke = Reply(["half ", "of it"], error=agtl.ServerError("cut", status_code=502))
    secondary = scripted("small", Reply("unused"))
    result = await answer(scripted("big", broke).with_fallback(secondary))
    assert isinstance(result.error, agtl.ServerError)
    assert result.partial is not None
    assert result.partial.text == "half of it"  # the text was the user's already
    refused = Reply(error=agtl.BadRequestError("bad", status_code=400))
    result = await answer(scripted("big", refused).with_fallback(secondary))
    assert isinstance(result.error, agtl.BadRequestError)
    assert secondary._script.calls == []
    # `on=` picks the errors to fall back on.
    chosen = scripted("big", refused).with_fallback(
        scripted("small", Reply("ok")), on=agtl.BadRequestError
    )
    assert (await answer(chosen)).value == "ok"


async def test_no_first_token_in_time_falls_back() -> None:
    slow = scripted("big", Reply("too late", first_delay=5))
    provider = slow.with_fallback(scripted("small", Reply("in time")), first_token_timeout=0.05)
    result = await answer(provider)
    assert result.value == "in time"
    first, _ = attempts(result.summary.llm_calls[0])
    assert first["outcome"] == "timeout"
    assert 0.05 <= first["seconds"] < 1


async def test_the_breaker_opens_passes_over_then_probes_and_closes() -> None:
    primary = scripted("big", down(), down(), Reply("back"))
    provider = primary.with_fallback(
        scripted("small", *(Reply(f"second {i}") for i in range(3))), failures=2, cooldown=0.2
    )
    assert [h.state for h in provider.health()] == [agtl.BreakerState.CLOSED] * 2
    assert (await answer(provider)).value == "second 0"
    assert (await answer(provider)).value == "second 1"
    [big, small] = provider.health()
    assert (big.state, big.failures, small.state) == (agtl.BreakerState.OPEN, 2, "closed")
    assert big.retry_in is not None
    assert 0 < big.retry_in <= 0.2
    # Open: passed over, not called.
    assert (await answer(provider)).value == "second 2"
    assert len(primary._script.calls) == 2
    await trio.sleep(0.2)
    # The cooldown is over: one call probes it, it answers, the breaker closes.
    assert (await answer(provider)).value == "back"
    assert provider.health()[0].state is agtl.BreakerState.CLOSED


async def test_a_cancel_during_an_attempt_is_recorded_and_nothing_is_left() -> None:
    signal = agtl.CancelSignal()
    provider = scripted("big", down()).with_fallback(
        scripted("small", Reply(["a ", "b ", "c"], first_delay=5))
    )

    async def workflow(session: agtl.Session) -> str:
        return (await session.generate_text(prompt="hello")).text

    async with trio.open_nursery() as nursery:
        nursery.cancel_scope.deadline = trio.current_time() + DEADLINE
        execution = provider.simple_execution(workflow, signal=signal)
        nursery.start_soon(execution.result)
        await trio.sleep(0.05)
        signal.cancel("the user left")
    result = execution.outcome
    assert result is not None
    assert result.canceled
    outcomes = [a["outcome"] for a in attempts(result.summary.llm_calls[0])]
    assert outcomes == ["error", "cancelled"]
    # A probe cut by a cancel leaves the breaker as it was.
    assert [h.failures for h in provider.health()] == [1, 0]


def test_bad_arguments_are_refused() -> None:
    one = scripted("big")
    with pytest.raises(agtl.InvalidArgumentError, match="at least two providers"):
        agtl.FallbackProvider(one)
    with pytest.raises(agtl.InvalidArgumentError, match="others"):
        agtl.FallbackProvider(one, "not a provider")  # type: ignore[arg-type]
    with pytest.raises(agtl.InvalidArgumentError, match="on"):
        one.with_fallback(scripted("small"), on=ValueError)  # type: ignore[arg-type]
    with pytest.raises(agtl.InvalidArgumentError, match="failures"):
        one.with_fallback(scripted("small"), failures=0)


async def test_a_hedge_starts_after_the_delay_and_the_first_output_wins() -> None:
    stalls = scripted("big", Reply("slow answer", first_delay=5, usage=agtl.Usage(7, 0)))
    quick = scripted("small", Reply("quick answer", first_delay=0.02, usage=agtl.Usage(7, 2)))
    provider = stalls.with_hedge(quick, after=0.05)
    started = trio.current_time()
    result = await answer(provider)
    assert result.value == "quick answer"
    assert trio.current_time() - started < 1  # the stalled one did not hold the call
    [call] = result.summary.llm_calls
    lost, won = attempts(call)
    assert (lost["model"], lost["outcome"]) == ("big", "lost")
    assert (won["model"], won["outcome"]) == ("small", "answered")
    # The loser ran until the winner's output: the hedge's 0.05 s, then its 0.02 s.
    assert lost["seconds"] >= 0.06
    # The loser's usage and cost are the call's too.
    assert call.usage.input_tokens == 14
    assert call.cost == Decimal(lost["cost"]) + Decimal(won["cost"])


async def test_no_hedge_when_the_first_answers_in_time_and_a_failure_hands_over() -> None:
    second = scripted("small", Reply("never"), Reply("took over"))
    provider = scripted("big", Reply("first", first_delay=0.01), down()).with_hedge(
        second, after=0.5
    )
    result = await answer(provider)
    assert result.value == "first"
    assert [a["outcome"] for a in attempts(result.summary.llm_calls[0])] == ["answered"]
    assert second._script.calls == []
    # The first fails at once: the second starts then, without waiting for `after`.
    started = trio.current_time()
    result = await answer(provider)
    assert result.value == "never"
    assert trio.current_time() - started < 0.4
    outcomes = [a["outcome"] for a in attempts(result.summary.llm_calls[0])]
    assert outcomes == ["error", "answered"]


async def test_a_cancel_reaches_both_hedged_attempts() -> None:
    provider = scripted("big", Reply("a", first_delay=5)).with_hedge(
        scripted("small", Reply("b", first_delay=5)), after=0.01
    )
    signal = agtl.CancelSignal()

    async def workflow(session: agtl.Session) -> str:
        return (await session.generate_text(prompt="hello")).text

    execution = provider.simple_execution(workflow, signal=signal)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(execution.result)
            await trio.sleep(0.05)
            signal.cancel("stop both")
    result = execution.outcome
    assert result is not None
    assert result.canceled
    outcomes = [a["outcome"] for a in attempts(result.summary.llm_calls[0])]
    assert outcomes == ["cancelled", "cancelled"]


async def test_p95_hedges_at_the_observed_first_token_times() -> None:
    replies = [Reply("x", first_delay=0.001 * (i % 10)) for i in range(25)]
    provider = scripted("big", *replies).with_hedge(scripted("small"), after="p95")
    assert provider.after == 1.0  # too few seen yet
    for _ in range(25):
        assert (await answer(provider)).succeeded
    assert 0.005 <= provider.after <= 0.05
    with pytest.raises(agtl.InvalidArgumentError, match="after"):
        provider.with_hedge(scripted("small"), after="p99")


async def test_tools_typed_output_streaming_and_journals_work_through_the_wrappers() -> None:
    class City(pydantic.BaseModel):
        name: str

    @agtl.tool
    def lookup(city: str) -> str:
        """Look a city up."""
        return f"{city} is big"

    def respond(request: agtl.GenerationRequest) -> Reply:
        last = request.messages[-1]
        if request.options.response_format is not None:
            return Reply('{"name": "Paris"}')
        if last.role is agtl.Role.TOOL:
            return Reply(f"so: {last.content}")
        if request.tools:
            return Reply("", tool_calls=[agtl.ToolCallRequest("c1", "lookup", {"city": "Paris"})])
        return Reply("streamed words here")

    for wrap in ("fallback", "hedge"):
        journal = agtl.CallJournal()
        good = ScriptedProvider(respond=respond)
        first = scripted("big", down(), down(), down(), down()) if wrap == "fallback" else good
        provider = (
            first.with_fallback(good) if wrap == "fallback" else good.with_hedge(good, after=1)
        ).with_journal(journal)

        async def workflow(session: agtl.Session) -> list[Any]:
            looked = await session.generate_text(prompt="tell me", tools=[lookup])
            city = await session.generate_object(output_type=City, prompt="which city?")
            async with session.stream_text(prompt="stream it") as stream:
                pieces = [piece async for piece in stream]
            return [looked.text, city.name, "".join(pieces)]

        result = await provider.simple_execution(workflow)
        assert result.value == ["so: Paris is big", "Paris", "streamed words here"], wrap
        assert result.summary.tool_calls[0].result == "Paris is big"
        # The journal replays every call of it, without the providers.
        again = agtl.CallJournal(journal.entries)
        replayed = await provider.with_journal(again).simple_execution(workflow)
        assert replayed.value == result.value
        assert all(c.replayed for c in replayed.summary.llm_calls), wrap
