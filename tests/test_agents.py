"""Agents on a scripted model: a run inside an execution with the agent's name on its records,
typed output, the ready workflow, and an agent called as a tool running as a child execution
(its Result listed in the parent's, cancelled with the parent, its failure a tool error)."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
import trio

import agtl
from agtl import Agent, Session, ToolCallRequest, ToolCallStatus
from agtl.testing import Reply, ScriptedProvider

DEADLINE = 10


@agtl.tool
def search(query: str) -> str:
    """Search the web."""
    return f"results for {query}"


RESEARCHER = Agent(
    "researcher", "You research one question with the search tool.", tools=[search], max_steps=3
)
PLANNER = Agent("planner", "You plan, and ask the researcher.", tools=[RESEARCHER.as_tool()])


def respond(request: agtl.GenerationRequest) -> Reply:
    """The planner asks the researcher once; the researcher searches once; both then answer."""
    system = request.messages[0].content
    last = request.messages[-1]
    if request.options.response_format is not None:
        return Reply('{"city": "Paris", "sure": true}')
    if last.role is agtl.Role.TOOL:
        who = "planner" if system.startswith("You plan") else "researcher"
        return Reply(f"{who} says: {last.content}")
    if system.startswith("You plan"):
        return Reply("", tool_calls=[ToolCallRequest("p1", "researcher", {"task": "capital?"})])
    if request.tools:
        return Reply("", tool_calls=[ToolCallRequest("r1", "search", {"query": last.content})])
    return Reply("plain answer")


async def test_an_agent_runs_its_loop_and_names_its_records() -> None:
    async def workflow(session: Session) -> agtl.AgentResult:
        return await RESEARCHER.run(session, "capital of France?")

    result = await ScriptedProvider(respond=respond).simple_execution(workflow)
    run = result.unwrap()
    assert run.agent == "researcher"
    assert run.output == run.text == "researcher says: results for capital of France?"
    assert [s.agent for s in run.steps] == ["researcher", "researcher"]
    assert [c.details["agent"] for c in result.summary.llm_calls] == ["researcher"] * 2
    assert result.summary.tool_calls[0].result == "results for capital of France?"


class Answer(pydantic.BaseModel):
    city: str
    sure: bool


async def test_typed_output_with_and_without_tools() -> None:
    provider = ScriptedProvider(respond=respond)
    for agent in (
        Agent("typed", "You answer.", output_type=Answer),
        Agent("typed-tools", "You research.", tools=[search], output_type=Answer),
    ):

        async def workflow(session: Session, agent: Agent = agent) -> agtl.AgentResult:
            return await agent.run(session, "capital?")

        run = (await provider.simple_execution(workflow)).unwrap()
        assert run.output == Answer(city="Paris", sure=True)
    last = provider.calls[-1]
    assert last.messages[-1].content == agtl.agent.FINAL_ANSWER_PROMPT
    assert last.messages[-2].content == "researcher says: results for capital?"


async def test_the_ready_workflow_takes_a_prompt_or_a_mapping() -> None:
    workflow = RESEARCHER.workflow
    assert workflow.__name__ == "researcher"
    provider = ScriptedProvider(respond=respond)
    for given in ("capital?", {"prompt": "capital?"}):

        async def run(session: Session, given: Any = given) -> Any:
            return await workflow(session, given)

        result = await provider.simple_execution(run)
        assert result.value == "researcher says: results for capital?"


async def test_an_agent_as_a_tool_runs_as_a_child_execution() -> None:
    result = await ScriptedProvider(respond=respond).simple_execution(
        lambda s: PLANNER.run(s, "What is the capital of France?")
    )
    run = result.unwrap()
    assert run.output == "planner says: researcher says: results for capital?"
    summary = result.summary
    # The researcher's calls are its own execution's, listed as the planner's child.
    assert [c.details["agent"] for c in summary.llm_calls] == ["planner", "planner"]
    [child] = summary.children
    assert child.status is agtl.Status.SUCCEEDED
    assert child.usage.output_tokens is not None
    assert child.usage.output_tokens > 0
    [asked] = summary.tool_calls
    assert (asked.name, asked.status) == ("researcher", ToolCallStatus.OK)


async def test_a_cancel_of_the_parent_reaches_the_child_and_its_tools() -> None:
    stopped: list[str] = []
    started = trio.Event()

    @agtl.tool
    async def slow_search(query: str) -> str:
        """Search slowly."""
        started.set()
        try:
            await trio.sleep(60)
        finally:
            stopped.append(query)
        return "never"

    researcher = Agent("researcher", "You research one question.", tools=[slow_search])
    planner = Agent("planner", "You plan, and ask the researcher.", tools=[researcher.as_tool()])

    def slow(request: agtl.GenerationRequest) -> Reply:
        if request.messages[0].content.startswith("You plan"):
            return Reply("", tool_calls=[ToolCallRequest("p1", "researcher", {"task": "go"})])
        return Reply("", tool_calls=[ToolCallRequest("r1", "slow_search", {"query": "q"})])

    execution = ScriptedProvider(respond=slow).simple_execution(lambda s: planner.run(s, "go"))
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(execution.result)
            await started.wait()
            execution.cancel("the user left")
    result = execution.outcome
    assert result is not None
    assert result.canceled
    assert stopped == ["q"]  # the grandchild tool's finally ran
    [child] = result.summary.children
    assert child.status is agtl.Status.CANCELED
    [asked] = result.summary.tool_calls
    assert asked.status is ToolCallStatus.CANCELLED


async def test_a_failed_child_is_a_tool_error_for_the_calling_model() -> None:
    researcher = Agent("researcher", "You research.", tools=[search])
    planner = Agent(
        "planner", "You plan, and ask the researcher.", tools=[researcher.as_tool(timeout=0.05)]
    )

    def stalls(request: agtl.GenerationRequest) -> Reply:
        system, last = request.messages[0].content, request.messages[-1]
        if system.startswith("You plan"):
            if last.role is agtl.Role.TOOL:
                return Reply(f"planner heard: {last.content}")
            return Reply("", tool_calls=[ToolCallRequest("p1", "researcher", {"task": "go"})])
        return Reply("too late", first_delay=5)

    result = await ScriptedProvider(respond=stalls).simple_execution(lambda s: planner.run(s, "go"))
    assert result.succeeded
    assert "SubAgentError" in str(result.value)
    assert "the agent researcher did not finish" in str(result.value)
    [child] = result.summary.children
    assert child.status is agtl.Status.CANCELED  # its own timeout


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Agent("2fast", "x"), "must start with a letter"),
        (lambda: Agent("a", ""), "instructions"),
        (lambda: Agent("a", "x", max_steps=0), "max_steps"),
        (lambda: Agent("a", "x", on_max_steps="guess"), "on_max_steps"),
        (lambda: Agent("a", "x", options={"temprature": 1}), "temprature"),
        (lambda: Agent("a", "x", tools=["not a tool"]), "tools"),
        (lambda: Agent("a", "x").as_tool(timeout=-1), "timeout"),
    ],
)
def test_bad_definitions_are_refused(make: Any, message: str) -> None:
    with pytest.raises(agtl.InvalidArgumentError, match=message):
        make()


def three_levels(words: int = 200) -> tuple[Agent, ScriptedProvider]:
    """planner -> researcher (a child) -> searcher (a grandchild) that talks at length."""
    searcher = Agent("searcher", "You search at length.")
    researcher = Agent("researcher", "You research.", tools=[searcher.as_tool()])
    planner = Agent("planner", "You plan.", tools=[researcher.as_tool()])

    def respond(request: agtl.GenerationRequest) -> Reply:
        system, last = request.messages[0].content, request.messages[-1]
        if last.role is agtl.Role.TOOL:
            return Reply("done")
        if system.startswith("You plan"):
            return Reply("", tool_calls=[ToolCallRequest("p1", "researcher", {"task": "go"})])
        if system.startswith("You research"):
            return Reply("", tool_calls=[ToolCallRequest("r1", "searcher", {"task": "go"})])
        return Reply([f"w{i} " for i in range(words)], delay=0.001)

    return planner, ScriptedProvider(respond=respond)


async def test_a_parents_budget_cuts_a_grandchilds_call_mid_stream() -> None:
    planner, provider = three_levels()
    result = await provider.simple_execution(
        lambda s: planner.run(s, "go"), limits=agtl.UsageLimits(max_output_tokens=30)
    )
    assert result.canceled
    assert result.cancel is not None
    assert result.cancel.source is agtl.CancelSource.LIMIT
    assert "max_output_tokens=30 exceeded" in (result.cancel.reason or "")
    assert "in the tree, by execution" in (result.cancel.reason or "")
    [child] = result.summary.children  # the researcher, with the searcher under it
    assert child.status is agtl.Status.CANCELED
    # The grandchild was stopped as soon as the tree crossed 30 output tokens, not at 200.
    assert child.usage.output_tokens is not None
    assert 30 < child.usage.output_tokens < 60
    assert result.summary.tree_usage.output_tokens == (
        (result.summary.total_usage.output_tokens or 0) + child.usage.output_tokens
    )


async def test_a_parents_request_and_tool_call_budgets_count_its_descendants() -> None:
    planner, provider = three_levels(words=3)
    # planner 1 call, researcher 1, searcher 1: a fourth (any level) is refused.
    by_requests = await provider.simple_execution(
        lambda s: planner.run(s, "go"), limits=agtl.UsageLimits(max_requests=3)
    )
    assert by_requests.canceled
    assert "max_requests=3 reached" in (by_requests.cancel.reason or "")  # type: ignore[union-attr]
    # The planner's tool call and the researcher's: a limit of one stops the second.
    by_tools = await provider.simple_execution(
        lambda s: planner.run(s, "go"), limits=agtl.UsageLimits(max_tool_calls=1)
    )
    assert by_tools.canceled
    assert "max_tool_calls=1 reached" in (by_tools.cancel.reason or "")  # type: ignore[union-attr]


async def test_an_approval_inside_a_child_is_decided_on_the_root() -> None:
    charged: list[int] = []

    @agtl.tool(needs_approval=True)
    async def charge(amount: int) -> str:
        """Charge the customer."""
        charged.append(amount)
        return f"charged {amount}"

    cashier = Agent("cashier", "You take payments.", tools=[charge])
    planner = Agent("planner", "You plan, and ask the cashier.", tools=[cashier.as_tool()])

    def respond(request: agtl.GenerationRequest) -> Reply:
        system, last = request.messages[0].content, request.messages[-1]
        if last.role is agtl.Role.TOOL:
            return Reply(f"ok: {last.content}")
        if system.startswith("You plan"):
            return Reply("", tool_calls=[ToolCallRequest("p1", "cashier", {"task": "pay"})])
        return Reply("", tool_calls=[ToolCallRequest("c1", "charge", {"amount": 7})])

    execution = ScriptedProvider(respond=respond).simple_execution(
        lambda s: planner.run(s, "pay 7")
    )
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(execution.result)
            async for request in execution.approval_requests():
                assert (request.id, request.tool, request.path) == (
                    "c1",
                    "charge",
                    ("planner", "cashier"),
                )
                assert request.execution_id != execution.execution_id  # the child's
                assert [r.id for r in execution.pending_approvals] == ["c1"]
                execution.approve("c1", by="root")
    result = execution.outcome
    assert result is not None
    assert result.unwrap().output == "ok: ok: charged 7"
    assert charged == [7]


def desk_model(request: agtl.GenerationRequest) -> Reply:
    """Triage hands billing questions to billing; billing answers; the ping-pong pair hand
    to each other for ever."""
    system, last = request.messages[0].content, request.messages[-1]
    if system.startswith("You triage"):
        if last.role is agtl.Role.TOOL:
            return Reply("should not happen")
        return Reply("", tool_calls=[ToolCallRequest("t1", "transfer_to_billing", {})])
    if system.startswith("You bill"):
        said = [m.content for m in request.messages if m.role is agtl.Role.USER]
        return Reply(f"billing heard: {' | '.join(said)}")
    other = "pong" if system.startswith("You ping") else "ping"
    return Reply(
        "", tool_calls=[ToolCallRequest(f"h{len(request.messages)}", f"transfer_to_{other}", {})]
    )


async def test_a_handoff_continues_the_conversation_with_the_target() -> None:
    billing = Agent("billing", "You bill.")
    triage = Agent("triage", "You triage.", handoffs=[billing])
    provider = ScriptedProvider(respond=desk_model)
    result = await provider.simple_execution(lambda s: triage.run(s, "refund me"))
    run = result.unwrap()
    assert (run.agent, run.handoffs, run.output) == (
        "billing",
        ("billing",),
        "billing heard: refund me",
    )
    assert [s.agent for s in run.steps] == ["triage", "billing"]
    assert [c.details["agent"] for c in result.summary.llm_calls] == ["triage", "billing"]
    # billing saw the conversation, with its own instructions in front.
    seen = provider.calls[-1].messages
    assert seen[0].content == "You bill."
    assert [m.role for m in seen[1:]] == [agtl.Role.USER, agtl.Role.ASSISTANT, agtl.Role.TOOL]
    assert seen[-1].content == "Transferred to billing."
    # keep="last_user": only the user's last message goes over.
    short = Agent("triage", "You triage.", handoffs=[agtl.handoff(billing, keep="last_user")])
    await provider.simple_execution(lambda s: short.run(s, "refund me"))
    assert [m.role for m in provider.calls[-1].messages] == [agtl.Role.SYSTEM, agtl.Role.USER]


async def test_a_handoff_loop_is_bounded() -> None:
    ping = Agent("ping", "You ping.", handoffs=[agtl.handoff(lambda: pong)], max_handoffs=3)
    pong = Agent("pong", "You pong.", handoffs=[agtl.handoff(lambda: ping)])
    result = await ScriptedProvider(respond=desk_model).simple_execution(
        lambda s: ping.run(s, "go")
    )
    assert isinstance(result.error, agtl.HandoffLoopError)
    assert result.error.path == ("ping", "pong", "ping", "pong", "ping")
    assert "max_handoffs=3" in str(result.error)


async def test_end_on_ends_a_tool_loop_once_that_tool_ran() -> None:
    @agtl.tool
    def finish(answer: str) -> str:
        """Give the final answer."""
        return answer

    provider = ScriptedProvider(
        Reply("", tool_calls=[ToolCallRequest("f1", "finish", {"answer": "42"})]),
        Reply("never asked"),
    )
    reply = (
        await provider.simple_execution(
            lambda s: s.generate_text(prompt="go", tools=[finish, search], end_on=["finish"])
        )
    ).unwrap()
    assert reply.steps[-1].tool_calls[0].result == "42"
    assert len(provider.calls) == 1
    refused = await provider.simple_execution(
        lambda s: s.generate_text(prompt="go", tools=[search], end_on=["finish"])
    )
    assert isinstance(refused.error, agtl.InvalidArgumentError)
    assert "names no tool of the call" in str(refused.error)


async def test_a_streaming_parent_gets_its_childs_parts_tagged_with_its_name() -> None:
    def stream_respond(request: agtl.GenerationRequest) -> Reply:
        first, last = request.messages[0], request.messages[-1]
        if first.role is not agtl.Role.SYSTEM:  # the parent's own loop
            if last.role is agtl.Role.TOOL:
                return Reply(f"parent says: {last.content}")
            return Reply("", tool_calls=[ToolCallRequest("p1", "researcher", {"task": "capital?"})])
        return respond(request)  # the researcher

    async def workflow(session: Session) -> list[Any]:
        seen: list[Any] = []
        async with session.stream_text(prompt="go", tools=PLANNER.tools) as stream:
            async for part in stream.parts():
                seen.append(part)
        return seen

    seen = (await ScriptedProvider(respond=stream_respond).simple_execution(workflow)).unwrap()
    children = [p for p in seen if isinstance(p, agtl.ChildPart)]
    assert {(c.agent, c.call_id) for c in children} == {("researcher", "p1")}
    kinds = [type(c.part).__name__ for c in children]
    assert "ToolCallStarted" in kinds  # the researcher's own search call
    assert "ToolCallFinished" in kinds
    text = "".join(c.part.text for c in children if isinstance(c.part, agtl.TextPart))
    assert text == "researcher says: results for capital?"
    # Parts of the child come before the parent's tool call finishes.
    finished = next(i for i, p in enumerate(seen) if isinstance(p, agtl.ToolCallFinished))
    assert all(seen.index(c) < finished for c in children)


async def test_an_agent_continues_a_conversation() -> None:
    chat = agtl.Conversation(RESEARCHER.instructions)

    async def two_turns(session: Session) -> list[Any]:
        first = await RESEARCHER.run(session, "capital of France?", conversation=chat)
        second = await RESEARCHER.run(session, "and of Japan?", conversation=chat)
        return [first.output, second.output]

    provider = ScriptedProvider(respond=respond)
    outputs = (await provider.simple_execution(two_turns)).unwrap()
    assert outputs == [
        "researcher says: results for capital of France?",
        "researcher says: results for and of Japan?",
    ]
    users = [e.content for e in chat.entries if e.role is agtl.Role.USER]
    assert users == ["capital of France?", "and of Japan?"]
    # The second turn's model call saw the first turn.
    assert any(m.content == "capital of France?" for m in provider.calls[-1].messages)


async def test_an_agent_without_tools_continues_a_conversation_with_plain_calls() -> None:
    chat = agtl.Conversation("You answer.")
    plain = Agent("plain", "You answer.")
    provider = ScriptedProvider(respond=respond)
    run = (
        await provider.simple_execution(lambda s: plain.run(s, "hi", conversation=chat))
    ).unwrap()
    assert run.output == "plain answer"
    assert provider.calls[-1].tools == ()
