"""The tool loop's cost, against the same work done by hand and against pydantic-ai.

* tools-overhead: a two-step loop (the scripted model asks for a no-op tool, then answers)
  against the same two scripted model calls made by hand with the same function awaited
  between them, in the same trio run, ABBA. The ratio is judged (target <= 1.2x), since the
  absolute cost moves with the machine; the notes give what the loop adds per tool call in
  us (validating the arguments, running the call in a nursery, recording it, building the
  messages);
* peer-tools: the same two-step loop against pydantic-ai's ``Agent.run`` with a ``TestModel``
  that calls the same tool once and then answers (target >= 10x faster);
* tools-cancel: cancel() to result() while 10 tools of one step run (p99 <= 2 ms, a constant
  budget); a sample counts only if all 10 had started and all 10 are recorded ``cancelled``;
* approvals: approve() from another task to the approved tool starting (p99 <= 1 ms, a
  constant budget); a sample counts only if the tool ran once, after the decision.
"""

from __future__ import annotations

import time

import trio
from pydantic_ai import Agent
from pydantic_ai.models.test import TestModel

import agtl
from agtl import Session, ToolCallRequest, ToolCallStatus
from agtl.testing import Reply, ScriptedProvider
from bench._harness import CancelSamples, Comparison, interleaved
from bench.peers import alternate

TOOL_RATIO = 1.2
CANCEL_BUDGET_MS = 2.0
CONCURRENT_TOOLS = 10


async def noop(value: int) -> int:
    """Return the value."""
    return value


NOOP = agtl.tool(noop)
ASK = Reply("", tool_calls=[ToolCallRequest("c1", "noop", '{"value": 1}')])
ANSWER = Reply("done")


def _two_steps(request: agtl.GenerationRequest) -> Reply:
    """The scripted model: ask for the tool, then answer once its result is back."""
    return ANSWER if request.messages[-1].role is agtl.Role.TOOL else ASK


async def overhead(*, quick: bool) -> Comparison:
    provider = ScriptedProvider(respond=_two_steps)
    plain = ScriptedProvider(respond=lambda request: ANSWER)

    async def loop(session: Session) -> str:
        return (await session.generate_text(prompt="go", tools=[NOOP])).text

    async def by_hand(session: Session) -> str:
        await session.generate_text(prompt="go")
        await noop(value=1)
        return (await session.generate_text(prompt="go on")).text

    async def with_loop(n: int) -> None:
        for _ in range(n):
            result = await provider.simple_execution(loop).result()
            assert result.value == "done", result
            assert result.summary.tool_calls[0].status is ToolCallStatus.OK

    async def with_hand(n: int) -> None:
        for _ in range(n):
            assert (await plain.simple_execution(by_hand).result()).value == "done"

    iterations, rounds = (200, 4) if quick else (2000, 10)
    candidate, baseline = await interleaved(
        with_loop, with_hand, iterations=iterations, rounds=rounds
    )
    ratio = candidate / baseline
    return Comparison(
        key="tools-overhead",
        name="tool loop: one tool call through the loop vs the same calls by hand",
        unit="us/execution",
        candidate=candidate * 1e6,
        baseline=baseline * 1e6,
        ratio=ratio,
        target=f"<= {TOOL_RATIO}x",
        passed=ratio <= TOOL_RATIO,
        detail={"added_us": (candidate - baseline) * 1e6},
    )


def peer(*, quick: bool) -> Comparison:
    provider = ScriptedProvider(respond=_two_steps)
    agent = Agent(TestModel(call_tools="all", custom_output_text="done"), tools=[noop])

    async def loop(session: Session) -> str:
        return (await session.generate_text(prompt="go", tools=[NOOP])).text

    async def with_agtl(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            assert (await provider.simple_execution(loop).result()).value == "done"
        return time.perf_counter() - start

    async def with_peer(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            assert (await agent.run("go")).output == "done"
        return time.perf_counter() - start

    n, rounds = (50, 2) if quick else (500, 6)
    candidate, baseline = alternate(with_agtl, with_peer, n=n, rounds=rounds)
    speedup = baseline / candidate
    return Comparison(
        key="peer-tools",
        name="two-step tool loop vs pydantic-ai Agent.run (TestModel calling the tool), speedup",
        unit="us/loop",
        candidate=candidate * 1e6,
        baseline=baseline * 1e6,
        ratio=speedup,
        target=">= 10x",
        passed=speedup >= 10,
    )


class _Crowd:
    """Counts the tools of one sample that are running; set when all of them are."""

    def __init__(self) -> None:
        self.running = 0
        self.all_running = trio.Event()

    async def wait(self) -> str:
        """Wait until stopped."""
        self.running += 1
        if self.running == CONCURRENT_TOOLS:
            self.all_running.set()
        await trio.sleep_forever()


async def cancel_latency(*, quick: bool) -> Comparison:
    calls = [ToolCallRequest(f"c{i}", "wait", "{}") for i in range(CONCURRENT_TOOLS)]
    provider = ScriptedProvider(respond=lambda request: Reply("", tool_calls=calls))
    samples = CancelSamples()
    for _ in range(20 if quick else 300):
        crowd = _Crowd()
        wait = agtl.tool(crowd.wait, name="wait")

        async def run(session: Session, wait: agtl.Tool = wait) -> None:
            await session.generate_text(prompt="go", tools=[wait])

        async with provider.simple_execution(run) as execution:
            await crowd.all_running.wait()
            started = time.perf_counter()
            execution.cancel()
            result = await execution.result()
            latency = time.perf_counter() - started
        statuses = [c.status for c in result.summary.tool_calls]
        problem = None
        if result.status is not agtl.Status.CANCELED:
            problem = f"status {result.status.value}, not canceled"
        elif statuses != [ToolCallStatus.CANCELLED] * CONCURRENT_TOOLS:
            problem = "not every tool was recorded cancelled"
        samples.add(latency, problem)
    return samples.figure(
        key="tools-cancel",
        name=f"cancel latency while {CONCURRENT_TOOLS} tools run (p99 vs a constant 2 ms)",
        budget_ms=CANCEL_BUDGET_MS,
        baseline_kind="constant",
    )


APPROVAL_BUDGET_MS = 1.0


def _acting(started: list[float]) -> agtl.Tool:
    """A tool that needs approval and notes when it starts."""

    @agtl.tool(needs_approval=True)
    async def act() -> str:
        """Act (after approval)."""
        started.append(time.perf_counter())
        return "done"

    return act


async def approval_latency(*, quick: bool) -> Comparison:
    """approve() from another task to the tool starting (p99 vs a constant 1 ms); a sample
    counts only if the tool ran once, after the decision, and its record says approved."""
    provider = ScriptedProvider(
        respond=lambda request: (
            ANSWER
            if request.messages[-1].role is agtl.Role.TOOL
            else Reply("", tool_calls=[ToolCallRequest("a1", "act", "{}")])
        )
    )
    samples = CancelSamples()
    for _ in range(20 if quick else 300):
        started: list[float] = []
        act = _acting(started)

        async def run(session: Session, act: agtl.Tool = act) -> str:
            return (await session.generate_text(prompt="go", tools=[act])).text

        execution = provider.simple_execution(run)
        decided = 0.0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(execution.result)
            async for request in execution.approval_requests():
                decided = time.perf_counter()
                request.approve()
        result = execution.outcome
        problem = None
        if result is None or not result.succeeded:
            problem = "the execution did not succeed"
        elif len(started) != 1 or started[0] < decided:
            problem = "the tool did not run exactly once, after the decision"
        elif (approval := result.summary.tool_calls[0].approval) is None or not approval.approved:
            problem = "the record does not say approved"
        samples.add((started[0] - decided) if started else 0.0, problem)
    return samples.figure(
        key="approvals",
        name="approve() from another task to the tool starting (p99 vs a constant 1 ms)",
        budget_ms=APPROVAL_BUDGET_MS,
        baseline_kind="constant",
    )
