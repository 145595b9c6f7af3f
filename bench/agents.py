"""Agents that call agents: what a child execution costs, how fast a tree stops, and the same
delegation in pydantic-ai.

* ``agents-subagent``: a planner whose tool asks a researcher (two scripted steps each), the
  researcher run as a child execution (``as_tool``), against the same researcher run inline
  by a plain tool in the planner's own execution (``agent.run``), ABBA. The figure is what the
  child execution adds per delegated call, against a constant 100 us; every run is checked
  (the answer, and one child listed, or none inline).
* ``agents-cancel``: cancel() of a three-level tree (a planner, 10 researchers asked in one
  step, each a child, each asking a searcher grandchild whose reply streams for a minute) to
  the planner's Result, p99 against a constant 2 ms (two unmeasured runs first; garbage
  collected before each cancel, so that the samples' own garbage is not timed). A sample
  counts only if all 10 leaves were streaming when the cancel fired, and the Result lists
  10 children, all canceled.
* ``agents-peer``: the same delegation (a planner calling one tool that runs a second agent,
  two steps each) against pydantic-ai (an agent whose tool awaits another agent's ``run``,
  both on ``TestModel``), speedup (target >= 10x).
"""

from __future__ import annotations

import gc
import time
from typing import Any

import trio
from pydantic_ai import Agent as PeerAgent
from pydantic_ai import RunContext
from pydantic_ai.models.test import TestModel

import agtl
from agtl import Session, ToolCallRequest
from agtl.testing import Reply, ScriptedProvider
from bench._harness import CancelSamples, Comparison, interleaved
from bench.peers import alternate

SUBAGENT_BUDGET_US = 100.0
CANCEL_BUDGET_MS = 2.0
LEAVES = 10


@agtl.tool
async def note(topic: str) -> str:
    """A note on the topic."""
    return "noted"


RESEARCHER = agtl.Agent("researcher", "You research.", tools=[note])


@agtl.tool(name="ask")
async def ask_inline(session: Session, task: str) -> str:
    """Ask the researcher, in this execution."""
    return str((await RESEARCHER.run(session, task)).output)


CHILD = agtl.Agent("planner", "You plan.", tools=[RESEARCHER.as_tool("ask")])
INLINE = agtl.Agent("planner", "You plan.", tools=[ask_inline])
ASK = Reply("", tool_calls=[ToolCallRequest("p1", "ask", '{"task": "go"}')])
NOTE = Reply("", tool_calls=[ToolCallRequest("r1", "note", '{"topic": "go"}')])
DONE = Reply("done")
LONG = Reply([f"w{i} " for i in range(6000)], delay=0.01)  # a minute, unless cancelled


def _two_steps_each(request: agtl.GenerationRequest) -> Reply:
    if request.messages[-1].role is agtl.Role.TOOL:
        return DONE
    return ASK if request.messages[0].content == "You plan." else NOTE


async def subagent(*, quick: bool) -> Comparison:
    provider = ScriptedProvider(respond=_two_steps_each)

    def batch(agent: agtl.Agent, children: int) -> Any:
        async def run(n: int) -> None:
            for _ in range(n):
                result = await provider.simple_execution(lambda s: agent.run(s, "go"))
                assert result.unwrap().output == "done"
                assert len(result.summary.children) == children

        return run

    iterations, rounds = (100, 3) if quick else (1000, 9)
    child, inline = await interleaved(
        batch(CHILD, 1), batch(INLINE, 0), iterations=iterations, rounds=rounds
    )
    added = max(0.0, child - inline) * 1e6
    return Comparison(
        key="agents-subagent",
        name="a sub-agent call as a child execution vs the same agent run inline, added cost",
        unit="us/call",
        candidate=added,
        baseline=SUBAGENT_BUDGET_US,
        ratio=added / SUBAGENT_BUDGET_US,
        target="<= 1.0x",
        passed=added <= SUBAGENT_BUDGET_US,
        detail={"child_us": child * 1e6, "inline_us": inline * 1e6},
        baseline_kind="constant",
    )


class _Leaves:
    def __init__(self) -> None:
        self.streaming = 0
        self.all = trio.Event()

    def started(self) -> None:
        self.streaming += 1
        if self.streaming == LEAVES:
            self.all.set()


async def tree_cancel(*, quick: bool) -> Comparison:
    samples = CancelSamples()
    count = 10 if quick else 100
    for index in range(count + 2):  # two unmeasured runs warm the paths up
        leaves = _Leaves()
        searcher = agtl.Agent("searcher", "You search.")
        researcher = agtl.Agent("researcher", "You research.", tools=[searcher.as_tool()])
        planner = agtl.Agent("planner", "You plan.", tools=[researcher.as_tool()])
        asks = [ToolCallRequest(f"p{i}", "researcher", '{"task": "go"}') for i in range(LEAVES)]

        def respond(
            request: agtl.GenerationRequest,
            leaves: _Leaves = leaves,
            asks: list[ToolCallRequest] = asks,
        ) -> Reply:
            system = request.messages[0].content
            if system == "You plan.":
                return Reply("", tool_calls=asks)
            if system == "You research.":
                return Reply("", tool_calls=[ToolCallRequest("r1", "searcher", '{"task": "x"}')])
            leaves.started()
            return LONG

        async def plan(session: Session, planner: agtl.Agent = planner) -> Any:
            return await planner.run(session, "go")

        execution = ScriptedProvider(respond=respond).simple_execution(plan)
        fired = 0.0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(execution.result)
            with trio.fail_after(30):
                await leaves.all.wait()
            gc.collect()  # the samples' own garbage is not the cancel's cost
            fired = time.perf_counter()
            execution.cancel("bench cancel")
        took = time.perf_counter() - fired
        result = execution.outcome
        problem = None
        if result is None or not result.canceled:
            problem = "the tree was not canceled"
        elif len(result.summary.children) != LEAVES:
            problem = f"{len(result.summary.children)} children listed, not {LEAVES}"
        elif any(c.status is not agtl.Status.CANCELED for c in result.summary.children):
            problem = "a child was not canceled"
        if index >= 2:
            samples.add(took, problem)
    return samples.figure(
        key="agents-cancel",
        name=f"cancel() of a three-level agent tree with {LEAVES} streaming leaves to its "
        "Result, p99",
        budget_ms=CANCEL_BUDGET_MS,
        baseline_kind="constant",
    )


def peer(*, quick: bool) -> Comparison:
    provider = ScriptedProvider(respond=_two_steps_each)
    research = PeerAgent(TestModel(call_tools="all", custom_output_text="done"))

    @research.tool_plain
    async def peer_note(topic: str) -> str:
        """A note on the topic."""
        return "noted"

    planning = PeerAgent(TestModel(call_tools="all", custom_output_text="done"))

    @planning.tool
    async def ask(ctx: RunContext[object], task: str) -> str:
        """Ask the researcher."""
        return (await research.run(task, usage=ctx.usage)).output

    async def with_agtl(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            result = await provider.simple_execution(lambda s: CHILD.run(s, "go"))
            assert result.unwrap().output == "done"
        return time.perf_counter() - start

    async def with_peer(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            assert (await planning.run("go")).output == "done"
        return time.perf_counter() - start

    n, rounds = (30, 2) if quick else (300, 6)
    candidate, baseline = alternate(with_agtl, with_peer, n=n, rounds=rounds)
    speedup = baseline / candidate
    return Comparison(
        key="agents-peer",
        name="an agent delegating to another (child execution) vs pydantic-ai agent delegation "
        "(TestModel), speedup",
        unit="us/run",
        candidate=candidate * 1e6,
        baseline=baseline * 1e6,
        ratio=speedup,
        target=">= 10x",
        passed=speedup >= 10,
    )
