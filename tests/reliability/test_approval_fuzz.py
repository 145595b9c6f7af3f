"""Approvals decided, denied, left to time out, or cancelled at random, from tasks and threads.

Each case is a scripted tool loop: one step asks for up to four tool calls, some of which need
approval; each request gets a decision drawn for it (approve, deny, no answer until the
tool's ``approval_timeout``, or a cancel of the whole execution), given from a trio task or
from a thread, after a drawn delay. Invariants, whatever was drawn:

* a denied or cancelled call never runs; an approved one (or one that needs none) runs
  exactly once, unless a cancel stopped the execution first;
* every request ends decided, timed out or withdrawn: nothing is pending at the end;
* every tool call is recorded exactly once, with the status its decision gives;
* no task and no thread is left.
"""

from __future__ import annotations

import threading
from typing import Any

import attrs
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agtl
from agtl import Session, ToolCallRequest, ToolCallStatus
from agtl.testing import Reply, ScriptedProvider
from tests.reliability.conftest import Tally, cases

CATEGORY = "approvals decided at random (task or thread), denied, timed out, cancelled"
DECISIONS = ("approve", "deny", "timeout", "cancel")


@attrs.frozen
class Call:
    needs_approval: bool
    decision: str  # one of DECISIONS (ignored without approval)
    delay: float  # seconds before the decision
    from_thread: bool


@st.composite
def calls(draw: Any) -> tuple[Call, ...]:
    count = draw(st.integers(min_value=1, max_value=4))
    return tuple(
        Call(
            needs_approval=draw(st.booleans()),
            decision=draw(st.sampled_from(DECISIONS)),
            delay=draw(st.sampled_from((0.0, 0.001, 0.01))),
            from_thread=draw(st.booleans()),
        )
        for _ in range(count)
    )


async def run_case(plan: tuple[Call, ...]) -> tuple[agtl.Result[Any], list[str]]:
    ran: list[str] = []
    tools = []
    for index, call in enumerate(plan):

        async def act(index: int = index) -> str:
            ran.append(f"t{index}")
            return "done"

        tools.append(
            agtl.Tool.from_schema(
                f"t{index}",
                "A tool.",
                {"type": "object", "properties": {}},
                act,
                needs_approval=call.needs_approval,
                approval_timeout=0.05 if call.decision == "timeout" else 30,
            )
        )
    requests = [ToolCallRequest(f"c{i}", f"t{i}", "{}") for i in range(len(plan))]

    def respond(request: agtl.GenerationRequest) -> Reply:
        if request.messages[-1].role is agtl.Role.TOOL:
            return Reply("answered")
        return Reply("", tool_calls=requests)

    async def workflow(session: Session) -> str:
        return (await session.generate_text(prompt="go", tools=tools, max_steps=2)).text

    execution = ScriptedProvider(respond=respond).simple_execution(workflow)

    def decide(request: agtl.ApprovalRequest, call: Call) -> None:
        if call.decision == "approve":
            request.approve()
        elif call.decision == "deny":
            request.deny("no")
        elif call.decision == "cancel":
            execution.cancel("the fuzz cancelled")

    async def decide_later(request: agtl.ApprovalRequest, call: Call) -> None:
        await trio.sleep(call.delay)
        try:
            if call.from_thread:
                await trio.to_thread.run_sync(decide, request, call)
            else:
                decide(request, call)
        except agtl.InvalidArgumentError:
            pass  # a cancel withdrew it first: deciding it is refused, and changes nothing

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(execution.result)
            async for request in execution.approval_requests():
                call = plan[int(request.tool[1:])]
                if call.decision != "timeout":
                    nursery.start_soon(decide_later, request, call)
    assert execution.outcome is not None
    assert execution.pending_approvals == ()
    return execution.outcome, ran


@settings(
    max_examples=cases(full=400, quick=60),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(plan=calls())
def test_approvals_hold_their_invariants(plan: tuple[Call, ...], tally: Tally) -> None:
    tally.start(CATEGORY, key=repr(plan))
    threads = _threads()
    result, ran = trio.run(run_case, plan)
    records = {c.name: c for c in result.summary.tool_calls}
    cancelled = any(c.needs_approval and c.decision == "cancel" for c in plan)
    for index, call in enumerate(plan):
        name = f"t{index}"
        record = records.get(name)
        if not call.needs_approval or call.decision == "approve":
            if not cancelled:
                assert ran.count(name) == 1, (plan, ran)
                assert record is not None
                assert record.status is ToolCallStatus.OK, (plan, record)
            else:
                assert ran.count(name) <= 1, (plan, ran)
        else:
            assert name not in ran, (plan, ran)  # denied, timed out or cancelled: never ran
            if record is not None and call.decision in ("deny", "timeout") and not cancelled:
                assert record.status is ToolCallStatus.DENIED, (plan, record)
        if record is not None and call.needs_approval and record.approval is not None:
            assert record.approval.approved == (call.decision == "approve"), (plan, record)
    assert len(records) == len(result.summary.tool_calls)  # each call recorded once
    if cancelled:
        assert result.canceled, (plan, result)
    else:
        assert result.succeeded, (plan, result)
        assert len(records) == len(plan)
    # No thread left behind; trio keeps idle worker threads of its own (one for each
    # decision made from a thread at the same time), which it reuses or ends by itself.
    assert _threads() <= threads, [t.name for t in threading.enumerate()]
    tally.hold(CATEGORY, landed=any(c.needs_approval for c in plan))


def _threads() -> int:
    """The live threads that are not trio's idle workers."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith("Trio thread"))
