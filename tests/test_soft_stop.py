"""A soft stop (execution.stop): the running model call, or the running step with its tool
calls, finishes; nothing new starts; the execution ends canceled with cancel.mode "soft" and
the complete last reply in its partial. With grace it escalates to a hard cancel."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import agtl
from agtl import Session, ToolCallRequest, ToolCallStatus
from agtl.testing import Reply, ScriptedProvider

DEADLINE = 10
WORDS = [f"w{i} " for i in range(20)]


def loop_provider(delay: float = 0.01) -> ScriptedProvider:
    """Each call streams 20 words, then asks for the tool (until a tool result comes)."""

    def respond(request: agtl.GenerationRequest) -> Reply:
        if request.messages[-1].role is agtl.Role.TOOL:
            return Reply(["after ", "the ", "tool"], delay=delay)
        return Reply(WORDS, delay=delay, tool_calls=[ToolCallRequest("c1", "act", {})])

    return ScriptedProvider(respond=respond)


async def stop_while_streaming(
    execution: Any, *, after: str, grace: float | None = None
) -> agtl.Result[Any]:
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(execution.result)
            await trio.sleep(0.05)  # the first call is mid-stream
            execution.stop(after=after, grace=grace, reason="wrap it up")
    outcome: agtl.Result[Any] | None = execution.outcome
    assert outcome is not None
    return outcome


def tool_loop(ran: list[str]) -> Any:
    @agtl.tool
    async def act() -> str:
        """Act."""
        ran.append("act")
        return "acted"

    async def workflow(session: Session) -> str:
        return (await session.generate_text(prompt="go", tools=[act])).text

    return workflow


async def test_after_the_call_the_reply_completes_and_its_tools_do_not_run() -> None:
    ran: list[str] = []
    result = await stop_while_streaming(
        loop_provider().simple_execution(tool_loop(ran)), after="call"
    )
    assert result.canceled
    assert result.cancel is not None
    assert (result.cancel.mode, result.cancel.reason) == ("soft", "wrap it up")
    assert result.cancel.source is agtl.CancelSource.HANDLE
    assert result.partial is not None
    assert result.partial.text == "".join(WORDS)  # the whole reply, not cut
    assert ran == []
    [call] = result.summary.llm_calls
    assert call.stop_reason is agtl.StopReason.TOOL_CALLS  # it finished by itself
    assert result.to_dict()["cancel"]["mode"] == "soft"
    assert agtl.Result.from_dict(result.to_dict()).cancel == result.cancel


async def test_after_the_step_its_tools_finish_and_no_new_call_starts() -> None:
    ran: list[str] = []
    result = await stop_while_streaming(
        loop_provider().simple_execution(tool_loop(ran)), after="step"
    )
    assert result.canceled
    assert result.cancel is not None
    assert result.cancel.mode == "soft"
    assert ran == ["act"]
    [tool] = result.summary.tool_calls
    assert tool.status is ToolCallStatus.OK
    assert len(result.summary.llm_calls) == 1  # the second call never started
    assert result.partial is not None
    assert result.partial.text == "".join(WORDS)


async def test_with_grace_a_stop_that_does_not_land_escalates_to_a_cancel() -> None:
    slow = ScriptedProvider(Reply(WORDS, delay=0.5))

    async def workflow(session: Session) -> str:
        return (await session.generate_text(prompt="go")).text

    result = await stop_while_streaming(slow.simple_execution(workflow), after="call", grace=0.2)
    assert result.canceled
    assert result.cancel is not None
    assert result.cancel.mode == "hard"
    assert "escalated to a cancel" in (result.cancel.reason or "")
    assert "wrap it up" in (result.cancel.reason or "")
    assert result.cancel.at < 1.0  # not the 10 s the reply would take
    [call] = result.summary.llm_calls
    assert call.stop_reason is agtl.StopReason.CANCELLED


async def test_a_stop_from_a_thread_and_bad_arguments() -> None:
    ran: list[str] = []
    execution = loop_provider().simple_execution(tool_loop(ran))
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(execution.result)
            await trio.sleep(0.05)
            await trio.to_thread.run_sync(lambda: execution.stop(after="call"))
    assert execution.outcome is not None
    assert execution.outcome.cancel is not None
    assert execution.outcome.cancel.mode == "soft"
    with pytest.raises(agtl.InvalidArgumentError, match="after"):
        execution.stop(after="turn")
    with pytest.raises(agtl.InvalidArgumentError, match="grace"):
        execution.stop(grace=-1)
