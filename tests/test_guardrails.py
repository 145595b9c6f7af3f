"""Guardrails on the scripted provider, in virtual time: every stage and verdict, how a trip
stops the call at once (and what it paid), rewrites, errors that fail closed, tools, agents,
and a cancel that lands while a guardrail runs."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

import agtl
from agtl import GuardrailTripped, Session, Status, StopReason, ToolCallRequest, ToolCallStatus
from agtl.guardrails import json_schema, max_length, redact
from agtl.testing import Reply, ScriptedProvider

#: A reply that would stream for 10 s: a thousand words, 10 ms apart.
LONG = Reply("word " * 1000, delay=0.01)


def _blocks_after(seconds: float, reason: str = "not allowed") -> agtl.Guardrail:
    @agtl.guardrail(name="slow_block")
    async def check(text: str) -> agtl.Verdict:
        await trio.sleep(seconds)
        return agtl.Verdict.block(reason)

    return check


def _passes_after(seconds: float, seen: list[float] | None = None) -> agtl.Guardrail:
    @agtl.guardrail(name="slow_pass")
    async def check(text: str) -> agtl.Verdict:
        await trio.sleep(seconds)
        if seen is not None:
            seen.append(trio.current_time())
        return agtl.Verdict.ok()

    return check


@agtl.guardrail(every="chunk")
def no_bad(text: str) -> agtl.Verdict:
    return agtl.Verdict.block("said bad") if "bad" in text else agtl.Verdict.ok()


async def test_an_input_guardrail_that_trips_after_50ms_stops_a_10s_call_at_once(
    autojump_clock: Any,
) -> None:
    provider = ScriptedProvider(LONG)

    async def workflow(session: Session) -> str:
        return (
            await session.generate_text(prompt="hi", input_guardrails=[_blocks_after(0.05)])
        ).text

    result = await provider.simple_execution(workflow)
    assert result.status is Status.FAILED
    assert isinstance(result.error, GuardrailTripped)
    assert (result.error.guardrail, result.error.stage, result.error.verdict) == (
        "slow_block",
        "input",
        "block",
    )
    assert result.error.call == 0
    [record] = result.summary.guardrails
    assert record.tripped
    assert record.verdict == "block"
    assert record.reason == "not allowed"
    assert record.at == pytest.approx(0.05)
    [call] = result.summary.llm_calls
    assert call.stop_reason is StopReason.ERROR
    assert call.ended_at - record.at < 1e-9  # the call ended the moment it tripped
    assert record.tokens_paid == call.usage.output_tokens
    assert record.tokens_paid is not None
    assert 0 < record.tokens_paid < 10  # 5 words were out at 50 ms, not 1000
    assert result.summary.duration < 0.1
    assert result.partial is not None
    assert result.partial.text.startswith("word ")  # what the call had produced is kept
    assert result.summary.tripped_guardrail == record
    assert "guardrail slow_block input call #0 block: not allowed" in result.summary.format()


async def test_a_call_returns_only_once_its_input_guardrail_passed(autojump_clock: Any) -> None:
    passed: list[float] = []
    provider = ScriptedProvider(Reply("quick answer", delay=0.01))

    async def workflow(session: Session) -> tuple[str, float]:
        reply = await session.generate_text(
            prompt="hi", input_guardrails=[_passes_after(1.0, passed)]
        )
        return reply.text, trio.current_time()

    result = await provider.simple_execution(workflow)
    text, returned = result.unwrap()
    assert text == "quick answer"
    assert passed
    assert returned >= passed[0]
    [record] = result.summary.guardrails
    assert (record.verdict, record.tripped, record.checks) == ("ok", False, 1)


async def test_no_tool_runs_before_the_input_guardrail_passed(autojump_clock: Any) -> None:
    ran: list[float] = []

    @agtl.tool
    async def lookup(q: str) -> str:
        """Look up."""
        ran.append(trio.current_time())
        return "found"

    provider = ScriptedProvider(
        Reply("", tool_calls=[ToolCallRequest("c1", "lookup", {"q": "x"})]),
        Reply("never"),
    )

    async def workflow(session: Session) -> str:
        reply = await session.generate_text(
            prompt="hi", tools=[lookup], input_guardrails=[_blocks_after(0.5)]
        )
        return reply.text

    result = await provider.simple_execution(workflow)
    assert isinstance(result.error, GuardrailTripped)
    assert ran == []  # the model asked for the tool at once, but its input was not cleared


async def test_an_output_guardrail_trips_mid_stream_and_the_workflow_catches_it(
    autojump_clock: Any,
) -> None:
    provider = ScriptedProvider(Reply("one two bad " + "more " * 500, delay=0.01))

    async def workflow(session: Session) -> tuple[str, str]:
        seen = []
        try:
            async with session.stream_text(prompt="hi", output_guardrails=[no_bad]) as stream:
                async for delta in stream:
                    seen.append(delta)
        except GuardrailTripped as trip:
            return "I can't help with that.", f"{trip.guardrail}:{''.join(seen)}"
        return "unreachable", ""

    result = await provider.simple_execution(workflow)
    answer, seen = result.unwrap()
    assert answer == "I can't help with that."
    assert seen.startswith("no_bad:one two")
    [record] = result.summary.guardrails
    assert (record.stage, record.verdict, record.tripped) == ("output", "block", True)
    [call] = result.summary.llm_calls
    assert call.usage.output_tokens is not None
    assert call.usage.output_tokens < 10  # stopped there, not after 500 more words


async def test_a_blocking_output_guardrail_keeps_the_blocked_piece_from_the_reader(
    autojump_clock: Any,
) -> None:
    strict = agtl.guardrail(no_bad.function, name="strict", every="chunk", blocking=True)
    provider = ScriptedProvider(Reply("one two bad three", delay=0.01))

    async def workflow(session: Session) -> str:
        async with session.stream_text(prompt="hi", output_guardrails=[strict]) as stream:
            async for delta in stream:
                session.emit("delta", delta)
        return stream.text

    result = await provider.simple_execution(workflow)
    assert isinstance(result.error, GuardrailTripped)
    delivered = "".join(e.data for e in result.events if e.type == "delta")
    assert delivered == "one two "
    assert result.partial is not None
    assert result.partial.text == "one two "  # the partial is what the reader saw


async def test_a_rewrite_at_the_end_changes_the_reply_and_the_conversation(
    autojump_clock: Any,
) -> None:
    provider = ScriptedProvider(Reply("write to bob@example.com or ann@example.org"))
    conversation = agtl.Conversation("Be brief.")
    emails = redact(r"\S+@\S+", "[email]")

    async def workflow(session: Session) -> str:
        reply = await session.generate_text(
            prompt="who?", conversation=conversation, output_guardrails=[emails]
        )
        return reply.text

    result = await provider.simple_execution(workflow)
    assert result.unwrap() == "write to [email] or [email]"
    assert conversation.entries[-1].content == "write to [email] or [email]"
    [record] = result.summary.guardrails
    assert (record.verdict, record.reason, record.tripped) == ("rewrite", "2 matches", False)


async def test_a_rewrite_before_the_end_is_an_error_that_fails_closed(autojump_clock: Any) -> None:
    @agtl.guardrail(every="chunk")
    def too_early(text: str) -> agtl.Verdict:
        return agtl.Verdict.rewrite("x")

    provider = ScriptedProvider(Reply("a b c"))
    result = await provider.simple_execution(
        lambda s: s.generate_text(prompt="hi", output_guardrails=[too_early])
    )
    assert isinstance(result.error, GuardrailTripped)
    assert result.error.verdict == "error"
    assert "every='end'" in (result.error.reason or "")


async def test_a_guardrail_that_raises_fails_closed_unless_told_to_allow(
    autojump_clock: Any,
) -> None:
    def broken(text: str) -> agtl.Verdict:
        raise RuntimeError("the checker is down")

    closed = agtl.guardrail(broken, name="closed")
    open_ = agtl.guardrail(broken, name="open", on_error="allow")
    provider = ScriptedProvider(Reply("fine"), Reply("fine again"))

    async def workflow(session: Session) -> str:
        allowed = await session.generate_text(prompt="a", input_guardrails=[open_])
        await session.generate_text(prompt="b", input_guardrails=[closed])
        return allowed.text

    result = await provider.simple_execution(workflow)
    assert isinstance(result.error, GuardrailTripped)
    assert result.error.guardrail == "closed"
    assert str(result.error) == (
        "guardrail 'closed' failed (and fails closed) the input: "
        "raised RuntimeError: the checker is down"
    )
    allowed, closed_record = result.summary.guardrails
    assert (allowed.name, allowed.verdict, allowed.tripped) == ("open", "error", False)
    assert (closed_record.name, closed_record.verdict, closed_record.tripped) == (
        "closed",
        "error",
        True,
    )


async def test_a_guardrail_that_times_out_is_an_error(autojump_clock: Any) -> None:
    @agtl.guardrail(timeout=0.2)
    async def hangs(text: str) -> agtl.Verdict:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    provider = ScriptedProvider(LONG)
    result = await provider.simple_execution(
        lambda s: s.generate_text(prompt="hi", input_guardrails=[hangs])
    )
    assert isinstance(result.error, GuardrailTripped)
    assert result.error.reason == "did not decide within its timeout of 0.2s"
    assert result.summary.duration == pytest.approx(0.2)


async def test_a_blocking_input_guardrail_runs_before_any_model_call(autojump_clock: Any) -> None:
    first = agtl.guardrail(_blocks_after(0.01).function, name="gate", blocking=True)
    provider = ScriptedProvider(LONG)
    result = await provider.simple_execution(
        lambda s: s.generate_text(prompt="hi", input_guardrails=[first])
    )
    assert isinstance(result.error, GuardrailTripped)
    assert result.error.call is None
    assert result.summary.llm_call_count == 0
    [record] = result.summary.guardrails
    assert (record.call, record.tokens_paid, record.tripped) == (None, None, True)


async def test_a_guardrail_on_tool_arguments_keeps_the_tool_from_running(
    autojump_clock: Any,
) -> None:
    ran: list[int] = []

    @agtl.guardrail
    def small(text: str) -> agtl.Verdict:
        amount = json.loads(text)["amount"]
        return agtl.Verdict.ok() if amount <= 100 else agtl.Verdict.block(f"{amount} is too much")

    @agtl.tool(guardrails=[small])
    async def pay(amount: int) -> str:
        """Pay."""
        ran.append(amount)
        return "paid"

    provider = ScriptedProvider(
        Reply("", tool_calls=[ToolCallRequest("c1", "pay", {"amount": 50})]),
        Reply("", tool_calls=[ToolCallRequest("c2", "pay", {"amount": 5000})]),
        Reply("never"),
    )
    result = await provider.simple_execution(lambda s: s.generate_text(prompt="pay", tools=[pay]))
    assert ran == [50]
    assert isinstance(result.error, GuardrailTripped)
    assert result.error.stage == "tool_arguments"
    ok, blocked = result.summary.tool_calls
    assert ok.status is ToolCallStatus.OK
    assert blocked.status is ToolCallStatus.BLOCKED
    assert "5000 is too much" in (blocked.error or "")
    records = result.summary.guardrails
    assert [(r.verdict, r.tool_call_id) for r in records] == [("ok", "c1"), ("block", "c2")]


async def test_a_guardrail_on_a_tool_result_rewrites_what_the_model_is_told(
    autojump_clock: Any,
) -> None:
    told: list[str] = []

    @agtl.tool(result_guardrails=[redact(r"\d{4}-\d{4}", "[card]")])
    async def account() -> str:
        """The account."""
        return "card 1234-5678"

    def respond(request: agtl.GenerationRequest) -> Reply:
        if request.messages[-1].role is agtl.Role.TOOL:
            told.append(request.messages[-1].content or "")
            return Reply("done")
        return Reply("", tool_calls=[ToolCallRequest("c1", "account", {})])

    provider = ScriptedProvider(respond=respond)
    result = await provider.simple_execution(
        lambda s: s.generate_text(prompt="show", tools=[account])
    )
    assert result.unwrap().text == "done"
    assert told == ["card [card]"]


async def test_a_cancel_while_a_guardrail_runs_stops_both_and_is_the_cause(
    autojump_clock: Any,
) -> None:
    provider = ScriptedProvider(LONG)
    started = trio.Event()

    @agtl.guardrail
    async def slow(text: str) -> agtl.Verdict:
        started.set()
        await trio.sleep(5)
        return agtl.Verdict.block("too late")

    execution = provider.simple_execution(
        lambda s: s.generate_text(prompt="hi", input_guardrails=[slow])
    )
    async with execution:
        with trio.fail_after(10):
            await started.wait()
        execution.cancel("the user left")
    result = await execution.result()
    assert result.status is Status.CANCELED
    assert result.cancel is not None
    assert result.cancel.reason == "the user left"
    [record] = result.summary.guardrails
    assert (record.verdict, record.tripped) == ("cancelled", False)
    assert result.summary.duration < 1


async def test_a_judge_guardrails_own_model_calls_are_recorded_as_its(
    autojump_clock: Any,
) -> None:
    provider = ScriptedProvider(Reply("the answer", delay=0.01), Reply("SAFE"))

    @agtl.guardrail(every="end")
    async def judge(session: Session, text: str) -> agtl.Verdict:
        verdict = await session.generate_text(prompt=f"Is this safe? {text}")
        return agtl.Verdict.ok() if "SAFE" in verdict.text else agtl.Verdict.block("unsafe")

    result = await provider.simple_execution(
        lambda s: s.generate_text(prompt="q", output_guardrails=[judge])
    )
    assert result.unwrap().text == "the answer"
    main, judged = result.summary.llm_calls
    assert "guardrail" not in main.details
    assert judged.details["guardrail"] == "judge"


async def test_an_agents_guardrails_check_its_input_once_and_every_reply(
    autojump_clock: Any,
) -> None:
    inputs: list[str] = []

    @agtl.guardrail(blocking=True)
    def note(text: str) -> agtl.Verdict:
        inputs.append(text)
        return agtl.Verdict.ok()

    agent = agtl.Agent(
        name="helper",
        instructions="Help.",
        input_guardrails=[note],
        output_guardrails=[max_length(20)],
    )
    provider = ScriptedProvider(Reply("a reply far longer than twenty characters"))
    result = await provider.simple_execution(lambda s: agent.run(s, "hello"))
    assert inputs == ["hello"]
    assert isinstance(result.error, GuardrailTripped)
    assert result.error.guardrail == "max_length"


async def test_generate_object_with_a_json_schema_guardrail(autojump_clock: Any) -> None:
    provider = ScriptedProvider(Reply('{"n": 3}'))
    result = await provider.simple_execution(
        lambda s: s.generate_object(
            output_type=dict[str, int], prompt="n?", output_guardrails=[json_schema(dict[str, int])]
        )
    )
    assert result.unwrap() == {"n": 3}
    assert [r.verdict for r in result.summary.guardrails] == ["ok"]


async def test_guardrail_records_survive_the_json_round_trip(autojump_clock: Any) -> None:
    provider = ScriptedProvider(LONG)
    result = await provider.simple_execution(
        lambda s: s.generate_text(prompt="hi", input_guardrails=[_blocks_after(0.05)])
    )
    again = agtl.Result.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.summary.guardrails == result.summary.guardrails


def test_bad_guardrail_arguments_say_what_is_wrong() -> None:
    with pytest.raises(agtl.InvalidArgumentError, match="every: must be one of chunk"):
        agtl.guardrail(every="word")
    with pytest.raises(agtl.InvalidArgumentError, match=r"takes \(text\) or \(session, text\)"):
        agtl.guardrail(lambda a, b, c: None)
    with pytest.raises(agtl.InvalidArgumentError, match="on_error: must be 'block' or 'allow'"):
        agtl.guardrail(on_error="ignore")
    with pytest.raises(agtl.InvalidArgumentError, match="decorate the function with @agtl"):
        agtl.Agent(name="a", instructions="b", input_guardrails=[lambda text: None])
    with pytest.raises(agtl.InvalidArgumentError, match="a second guardrail named 'no_bad'"):
        agtl.tool(lambda: None, name="t", description="d", guardrails=[no_bad, no_bad])


async def test_a_session_call_refuses_a_function_given_as_a_guardrail() -> None:
    provider = ScriptedProvider(Reply("x"))
    result = await provider.simple_execution(
        lambda s: s.generate_text(prompt="hi", output_guardrails=[print])  # type: ignore[list-item]
    )
    assert isinstance(result.error, agtl.InvalidArgumentError)
    assert "output_guardrails[0]: must be an agtl.Guardrail" in str(result.error)


async def test_provider_generate_text_takes_guardrails(autojump_clock: Any) -> None:
    provider = ScriptedProvider(Reply("a long reply indeed"))
    result = await provider.generate_text("hi", output_guardrails=[max_length(5)])
    assert isinstance(result.error, GuardrailTripped)
    with pytest.raises(agtl.InvalidArgumentError, match="input_guardrails"):
        provider.generate_text("hi", input_guardrails="strict")  # type: ignore[arg-type]
