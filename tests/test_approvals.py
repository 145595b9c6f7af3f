"""A person in the loop: tool calls that wait for approval, decided from a task or a thread,
denied, timed out, or cancelled while they wait; the tool runs only when approved."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

import agtl
from agtl import Session, ToolCallRequest, ToolCallStatus
from agtl.journal import Decision
from agtl.testing import Reply, ScriptedProvider

DEADLINE = 10


def _transfer_tool(ran: list[int], **options: Any) -> agtl.Tool:
    @agtl.tool(needs_approval=True, **options)
    async def transfer(amount: int) -> str:
        """Send money."""
        ran.append(amount)
        return f"sent {amount}"

    return transfer


def _asks_then_answers(amount: int = 500) -> ScriptedProvider:
    def respond(request: agtl.GenerationRequest) -> Reply:
        if request.messages[-1].role is agtl.Role.TOOL:
            return Reply(f"the tool said: {request.messages[-1].content}")
        return Reply("", tool_calls=[ToolCallRequest("t1", "transfer", {"amount": amount})])

    return ScriptedProvider(respond=respond)


def _loop(tool: agtl.Tool) -> Any:
    async def workflow(session: Session) -> str:
        return (await session.generate_text(prompt="pay", tools=[tool])).text

    return workflow


async def test_an_approved_call_runs_once_and_its_record_says_so() -> None:
    ran: list[int] = []
    provider = _asks_then_answers()
    tool = _transfer_tool(ran)

    async def gen(session: Session) -> AsyncIterator[agtl.Event]:
        reply = await session.generate_text(prompt="pay", tools=[tool])
        yield await session.done(reply.text)

    execution = provider.streaming_execution(gen)
    async with execution:
        with trio.fail_after(DEADLINE):
            async for event in execution.stream():
                if event.type == "approval_requested":
                    assert event.data == {
                        "id": "t1",
                        "tool": "transfer",
                        "arguments": {"amount": 500},
                    }
                    assert [r.id for r in execution.pending_approvals] == ["t1"]
                    assert ran == []  # nothing runs before the decision
                    await trio.sleep(0.05)
                    execution.approve("t1", by="alice")
    result = execution.outcome
    assert result is not None
    assert result.value == "the tool said: sent 500"
    assert ran == [500]
    [call] = result.summary.tool_calls
    assert call.status is ToolCallStatus.OK
    assert call.approval is not None
    assert call.approval.approved
    assert call.approval.by == "alice"
    assert call.approval.waited >= 0.05
    assert call.duration is not None
    assert call.duration < call.approval.waited  # the tool's time excludes the wait
    assert execution.pending_approvals == ()
    again = agtl.Summary.from_dict(result.summary.to_dict())
    assert again.tool_calls[0].approval == call.approval
    assert "[approved by alice after" in result.summary.format()


async def test_a_denied_call_never_runs_and_the_model_hears_why() -> None:
    ran: list[int] = []
    provider = _asks_then_answers()
    execution = provider.simple_execution(_loop(_transfer_tool(ran)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(execution.result)
        async for request in execution.approval_requests():
            assert (request.tool, request.arguments) == ("transfer", {"amount": 500})
            request.deny("too much money")
    result = execution.outcome
    assert result is not None
    assert result.value == "the tool said: The user denied this call: too much money"
    assert ran == []
    [call] = result.summary.tool_calls
    assert call.status is ToolCallStatus.DENIED
    assert call.error == "too much money"
    assert call.approval is not None
    assert not call.approval.approved


async def test_a_predicate_asks_only_for_the_calls_it_names() -> None:
    ran: list[int] = []
    tool = _transfer_tool(ran)
    small = agtl.tool(
        tool.function, name="transfer", needs_approval=lambda args: args["amount"] > 100
    )
    result = await _asks_then_answers(amount=20).simple_execution(_loop(small))
    assert result.value == "the tool said: sent 20"
    assert result.summary.tool_calls[0].approval is None


async def test_no_decision_in_time_is_a_denial() -> None:
    ran: list[int] = []
    tool = _transfer_tool(ran, approval_timeout=0.05)
    with trio.fail_after(DEADLINE):
        result = await _asks_then_answers().simple_execution(_loop(tool))
    assert ran == []
    [call] = result.summary.tool_calls
    assert call.status is ToolCallStatus.DENIED
    assert call.error == "no decision within 0.05 s"
    assert result.value == "the tool said: The user denied this call: no decision within 0.05 s"


async def test_a_cancel_while_waiting_ends_the_wait_and_the_tool_never_runs() -> None:
    ran: list[int] = []
    execution = _asks_then_answers().simple_execution(_loop(_transfer_tool(ran)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(execution.result)
        with trio.fail_after(DEADLINE):
            async for _request in execution.approval_requests():
                execution.cancel("the user left")
    result = execution.outcome
    assert result is not None
    assert result.canceled
    assert ran == []
    assert result.summary.tool_calls[0].status is ToolCallStatus.CANCELLED
    assert execution.pending_approvals == ()
    with pytest.raises(agtl.InvalidArgumentError, match="was already decided"):
        execution.approve("t1")


async def test_deciding_from_a_thread_and_wrong_ids() -> None:
    ran: list[int] = []
    execution = _asks_then_answers().simple_execution(_loop(_transfer_tool(ran)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(execution.result)
        with trio.fail_after(DEADLINE):
            async for request in execution.approval_requests():
                with pytest.raises(agtl.InvalidArgumentError, match="'nope' is not an open"):
                    execution.approve("nope")
                assert execution.pending_approvals == (request,)  # nothing changed
                await trio.to_thread.run_sync(execution.approve, request.id)
                with pytest.raises(agtl.InvalidArgumentError, match="was already decided"):
                    execution.deny(request.id, "too late")
    assert ran == [500]
    assert execution.outcome is not None
    assert execution.outcome.value == "the tool said: sent 500"


async def test_requests_end_with_the_execution_and_bad_rules_are_refused() -> None:
    result = await ScriptedProvider("hi").simple_execution(lambda s: s.generate_text(prompt="x"))
    assert result.succeeded
    with pytest.raises(agtl.InvalidArgumentError, match="needs_approval"):
        agtl.tool(lambda: None, needs_approval="yes")  # type: ignore[call-overload]

    async def quick(session: Session) -> str:
        return "done"

    execution = ScriptedProvider().simple_execution(quick)
    await execution.result()
    with trio.fail_after(DEADLINE):
        assert [r async for r in execution.approval_requests()] == []


async def test_a_workflow_asks_a_person_and_gets_a_validated_answer() -> None:
    async def gen(session: Session) -> AsyncIterator[agtl.Event]:
        age = await session.request_input("How old are you?", output_type=int)
        yield await session.done(age + 1)

    execution = ScriptedProvider().streaming_execution(gen)
    async with execution:
        with trio.fail_after(DEADLINE):
            async for event in execution.stream():
                if event.type == "input_requested":
                    assert event.data["prompt"] == "How old are you?"
                    assert event.data["schema"] == {"type": "integer"}
                    [question] = execution.pending_inputs
                    with pytest.raises(agtl.InvalidArgumentError, match="value: does not fit"):
                        execution.provide_input(question.id, "not a number")
                    assert execution.pending_inputs == (question,)  # still open
                    await trio.to_thread.run_sync(execution.provide_input, question.id, "41")
                    with pytest.raises(agtl.InvalidArgumentError, match="already answered"):
                        question.provide(5)
    assert execution.outcome is not None
    assert execution.outcome.value == 42  # "41" validated as an int


async def test_no_answer_in_time_raises_in_the_workflow_and_a_cancel_ends_the_wait() -> None:
    async def ask(session: Session) -> str:
        try:
            return str(await session.request_input("Name?", timeout=0.05))
        except agtl.InputTimeoutError as error:
            return f"gave up: {error}"

    with trio.fail_after(DEADLINE):
        result = await ScriptedProvider().simple_execution(ask)
    assert result.value == "gave up: no answer to 'Name?' within 0.05 s"

    async def wait_forever(session: Session) -> AsyncIterator[agtl.Event]:
        yield await session.done(await session.request_input("Name?"))

    execution = ScriptedProvider().streaming_execution(wait_forever)
    async with execution:
        with trio.fail_after(DEADLINE):
            async for event in execution.stream():
                if event.type == "input_requested":
                    execution.cancel("nobody is there")
    assert execution.outcome is not None
    assert execution.outcome.canceled
    assert execution.pending_inputs == ()

    async def odd_type(session: Session) -> object:
        return await session.request_input("x", output_type=object())

    refused = await ScriptedProvider().simple_execution(odd_type)
    assert isinstance(refused.error, agtl.InvalidArgumentError)
    assert "output_type: cannot validate answers as it" in str(refused.error)


async def _decide_each(execution: Any, decide: Any) -> None:
    async for request in execution.approval_requests():
        decide(request)


async def test_a_decision_is_journaled_and_a_later_attempt_does_not_ask_again() -> None:
    ran: list[int] = []
    tool = _transfer_tool(ran)
    first = agtl.CallJournal(key="job-1")
    execution = _asks_then_answers().with_journal(first).simple_execution(_loop(tool))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_decide_each, execution, lambda r: r.deny("too much", by="bob"))
        with trio.fail_after(DEADLINE):
            result = await execution
    assert ran == []
    [decision] = first.decisions
    assert (decision.request_id, decision.kind, decision.approved) == ("t1", "approval", False)
    assert (decision.reason, decision.by) == ("too much", "bob")
    # A later attempt replays the calls and the decision: nobody is asked. Either the
    # attempt ended before the tool call finished (only the decision is known) or after.
    for known in (first.entries[:1], first.entries):
        again = agtl.CallJournal(known, decisions=first.decisions, key="job-1")
        with trio.fail_after(DEADLINE):
            replayed = await _asks_then_answers().with_journal(again).simple_execution(_loop(tool))
        assert replayed.value == result.value
        [call] = replayed.summary.tool_calls
        assert call.status is ToolCallStatus.DENIED
        assert call.replayed is (len(known) > 1)
        assert call.approval == agtl.Approval(False, "too much", "bob", decision.waited)
    assert ran == []


async def test_a_journal_that_waits_elsewhere_is_told_of_each_request_and_keeps_no_timer() -> None:
    told: list[Any] = []
    opened = trio.Event()

    def on_wait(request: Any) -> None:
        told.append(dict(request))
        opened.set()

    journal = agtl.CallJournal(on_wait=on_wait)
    # A timeout of 0.01 s would deny at once here; a host that waits elsewhere times it.
    tool = _transfer_tool([], approval_timeout=0.01)
    execution = _asks_then_answers(7).with_journal(journal).simple_execution(_loop(tool))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(execution.result)
        with trio.fail_after(DEADLINE):
            await opened.wait()
        await trio.sleep(0.05)
        assert [r.id for r in execution.pending_approvals] == ["t1"]
        execution.cancel("the host waits elsewhere")
    assert told == [
        {
            "kind": "approval",
            "id": "t1",
            "tool": "transfer",
            "arguments": {"amount": 7},
            "timeout": 0.01,
        }
    ]
    assert journal.decisions == ()  # a withdrawn request is not a decision


async def test_answers_are_journaled_replayed_and_a_refused_one_asks_again() -> None:
    async def workflow(session: Session) -> int:
        return int(await session.request_input("how many?", int))

    def journal_with(value: Any) -> agtl.CallJournal:
        return agtl.CallJournal(decisions=[Decision("input", "input", value=value)])

    with trio.fail_after(DEADLINE):
        result = await ScriptedProvider().with_journal(journal_with(3)).simple_execution(workflow)
    assert result.value == 3
    told: list[Any] = []
    journal = agtl.CallJournal(
        decisions=[Decision("input", "input", value="three")], on_wait=told.append
    )
    execution = ScriptedProvider().with_journal(journal).simple_execution(workflow)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(execution.result)
        with trio.fail_after(DEADLINE):
            async for request in execution.input_requests():
                request.provide(4)
                break
    assert execution.outcome is not None
    assert execution.outcome.value == 4
    assert "integer" in (told[0]["refused"] or "")
    [decision] = journal.decisions
    assert decision.value == 4
    timed_out = agtl.CallJournal(
        decisions=[Decision("input", "input", reason="no answer in time", timed_out=True)]
    )
    with trio.fail_after(DEADLINE):
        failed = await ScriptedProvider().with_journal(timed_out).simple_execution(workflow)
    assert isinstance(failed.error, agtl.InputTimeoutError)
    assert str(failed.error) == "no answer in time"


async def test_the_calls_approval_timeout_bounds_tools_without_their_own() -> None:
    ran: list[int] = []
    own = _transfer_tool(ran, approval_timeout=30)
    bare = _transfer_tool(ran)

    async def workflow(session: Session) -> list[str]:
        texts = []
        for tool in (bare, own):
            reply = await session.generate_text(prompt="pay", tools=[tool], approval_timeout=0.05)
            texts.append(reply.text)
        return texts

    execution = _asks_then_answers().simple_execution(workflow)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(execution.result)
        with trio.fail_after(DEADLINE):
            seen = 0
            async for request in execution.approval_requests():
                seen += 1
                if seen == 2:  # its own bound wins: approved after the call's would have passed
                    await trio.sleep(0.1)
                    request.approve()
    result = execution.outcome
    assert result is not None
    assert result.value == [
        "the tool said: The user denied this call: no decision within 0.05 s",
        "the tool said: sent 500",
    ]
    assert ran == [500]

    async def no_tools(session: Session) -> Any:
        return await session.generate_text(prompt="x", approval_timeout=1)

    refused = await ScriptedProvider().simple_execution(no_tools)
    assert isinstance(refused.error, agtl.InvalidArgumentError)
    assert "approval_timeout: only applies to a call with tools=" in str(refused.error)
