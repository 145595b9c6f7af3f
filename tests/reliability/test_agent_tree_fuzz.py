"""An agent tree cancelled at random points, by every source (and, on the bundled model, by
the handle and a timeout): a planner whose tool asks a
researcher (a child execution), whose tool asks a searcher (a grandchild) that streams and
calls a search tool (async, or a plain def in a thread).

Invariants, whatever was drawn:

* the planner's Result is canceled, with the source that fired (``limit`` for a budget of the
  planner crossed anywhere below it, ``enclosing_scope`` for a scope of the caller's);
* every child the planner's summary lists ended canceled (or succeeded, if it finished
  before the cancel), never failed, and never running;
* every search tool that started also finished its ``finally``: nothing of any level is left
  running, no task and no thread.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import attrs
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agtl
from agtl import Agent, ToolCallRequest
from agtl.testing import Reply, ScriptedProvider
from agtl_llamacpp import LlamaCppProvider
from examples import research_team
from tests.reliability.conftest import Tally, cases

CATEGORY = "cancels of a three-level agent tree at random points, by every source"
SOURCES = ("handle", "signal", "timeout", "limit", "scope")


@attrs.frozen
class Plan:
    source: str
    delay: float
    sync_tool: bool
    researchers: int


plans = st.builds(
    Plan,
    source=st.sampled_from(SOURCES),
    delay=st.sampled_from((0.0, 0.001, 0.005, 0.01, 0.02, 0.05)),
    sync_tool=st.booleans(),
    researchers=st.integers(min_value=1, max_value=3),
)


def tree(plan: Plan, started: list[str], finished: list[str]) -> Agent:
    if plan.sync_tool:

        def search(query: str) -> str:
            """Search (in a thread)."""
            started.append(query)
            try:
                time.sleep(0.02)
            finally:
                finished.append(query)
            return "found"

    else:

        async def search(query: str) -> str:  # type: ignore[misc]
            """Search."""
            started.append(query)
            try:
                await trio.sleep(0.02)
            finally:
                finished.append(query)
            return "found"

    searcher = Agent("searcher", "You search.", tools=[agtl.tool(search)])
    researcher = Agent("researcher", "You research.", tools=[searcher.as_tool()])
    return Agent("planner", "You plan.", tools=[researcher.as_tool()])


def provider(plan: Plan) -> ScriptedProvider:
    asks = [
        ToolCallRequest(f"p{i}", "researcher", '{"task": "go"}') for i in range(plan.researchers)
    ]

    def respond(request: agtl.GenerationRequest) -> Reply:
        system, last = request.messages[0].content, request.messages[-1]
        if last.role is agtl.Role.TOOL:
            return Reply(["fine ", "then"], delay=0.002)
        if system == "You plan.":
            return Reply("", tool_calls=asks)
        if system == "You research.":
            return Reply("", tool_calls=[ToolCallRequest("r1", "searcher", '{"task": "x"}')])
        return Reply(
            [f"w{i} " for i in range(5)],
            delay=0.002,
            tool_calls=[ToolCallRequest("s1", "search", '{"query": "q"}')],
        )

    return ScriptedProvider(respond=respond)


async def run_case(plan: Plan, started: list[str], finished: list[str]) -> agtl.Result[Any]:
    planner = tree(plan, started, finished)
    signal = agtl.CancelSignal()
    limits = agtl.UsageLimits(max_output_tokens=6) if plan.source == "limit" else None
    timeout = 0.01 + plan.delay if plan.source == "timeout" else None
    execution = provider(plan).simple_execution(
        lambda s: planner.run(s, "go"), signal=signal, timeout=timeout, limits=limits
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(execution.result)
            await trio.sleep(plan.delay)
            if plan.source == "handle":
                execution.cancel("the fuzz cancelled")
            elif plan.source == "signal":
                signal.cancel("the fuzz cancelled")
            elif plan.source == "scope":  # a scope of the caller's, around the execution
                nursery.cancel_scope.cancel()
    assert execution.outcome is not None
    return execution.outcome


@settings(
    max_examples=cases(full=300, quick=40),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(plan=plans)
def test_an_agent_tree_stops_whole_from_every_source(plan: Plan, tally: Tally) -> None:
    tally.start(CATEGORY, key=repr(plan))
    threads = threading.active_count()
    started: list[str] = []
    finished: list[str] = []
    result = trio.run(run_case, plan, started, finished)
    if result.succeeded:  # the tree finished before the cancel could land
        tally.hold(CATEGORY, landed=False)
        return
    assert result.canceled, (plan, result.error)
    assert result.cancel is not None
    expected = {
        "handle": agtl.CancelSource.HANDLE,
        "signal": agtl.CancelSource.SIGNAL,
        "timeout": agtl.CancelSource.TIMEOUT,
        "limit": agtl.CancelSource.LIMIT,
        "scope": agtl.CancelSource.ENCLOSING_SCOPE,
    }[plan.source]
    assert result.cancel.source is expected, (plan, result.cancel)
    for child in result.summary.children:
        assert child.status in (agtl.Status.CANCELED, agtl.Status.SUCCEEDED), (plan, child)
    assert sorted(started) == sorted(finished), (plan, started, finished)
    assert threading.active_count() <= threads + 1  # trio's idle worker thread at most
    tally.hold(CATEGORY, landed=True)


BUNDLED_CATEGORY = "cancels of an agent tree on the bundled model at random points"


def test_an_agent_tree_on_the_bundled_model_stops_whole(tally: Tally) -> None:

    async def main() -> list[tuple[float, str, agtl.Result[Any]]]:
        outcomes = []
        async with LlamaCppProvider() as local:
            for index in range(cases(full=6, quick=2)):
                after = [0.05, 0.3, 0.8, 1.5, 0.15, 0.6][index]
                source = ("handle", "timeout")[index % 2]
                timeout = after if source == "timeout" else None
                execution = local.simple_execution(
                    lambda s: research_team.team(s, "What is the capital of France?"),
                    timeout=timeout,
                )
                with trio.fail_after(60):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(execution.result)
                        if source == "handle":
                            await trio.sleep(after)
                            execution.cancel("stop the team")
                assert execution.outcome is not None
                outcomes.append((after, source, execution.outcome))
        return outcomes

    threads = threading.active_count()
    for after, source, result in trio.run(main):
        tally.start(BUNDLED_CATEGORY, key=(after, source))
        if result.succeeded:  # it answered before the cancel
            tally.hold(BUNDLED_CATEGORY, landed=False)
            continue
        assert result.canceled, (after, source, result.error)
        assert result.cancel is not None
        assert result.cancel.source.value == source
        for child in result.summary.children:
            assert child.status in (agtl.Status.CANCELED, agtl.Status.SUCCEEDED), child
        tally.hold(BUNDLED_CATEGORY, landed=True)
    assert threading.active_count() <= threads + 1
