"""Cancel a tool loop anywhere: in a model call, in a tool, between steps, by every mechanism.

Each case is a scripted tool loop on trio's autojump clock: a few steps, each a model call
that takes a known time and asks for up to three tools, each tool sleeping a known time (the
calls of a step run concurrently, so a step's tools end with its slowest), then a final
answer. A cancel is aimed at a time inside that timeline (never on a scripted instant), or a
``max_tool_calls`` limit below what the script needs, or nothing (the control). Every case
checks, on both hosts:

* the status and cancel source the timeline gives;
* every tool that started is recorded exactly once: ``ok`` if it finished before the cancel,
  ``cancelled`` if it was running; none that had not started is recorded;
* every started tool's ``finally`` ran, no task is left, and no tool thread: some tools are
  plain ``def`` functions in threads of their own, which a cancel cannot interrupt (agtl
  waits for them, within its grace), so a cancel must still end with every thread gone (a
  usage limit hit at a tool's start also stops the calls of that step already running);
* one LLM-call record per model call started; the hook ran once; stream consumers ended by
  themselves.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import attrs
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agtl
from agtl import CancelSignal, Event, Session, ToolCallRequest, ToolCallStatus, UsageLimits
from agtl.result import CancelSource, Status
from agtl.testing import Reply, ScriptedProvider
from tests.reliability.conftest import Tally, cases

STEP = 0.1
#: Real seconds the clock waits, idle, before it jumps, in cases with sync tools.
SYNC_AUTOJUMP = 0.02
MECHANISMS = ("none", "handle", "signal", "timeout", "enclosing", "limit_tools")
SOURCES = {
    "handle": CancelSource.HANDLE,
    "signal": CancelSource.SIGNAL,
    "timeout": CancelSource.TIMEOUT,
    "enclosing": CancelSource.ENCLOSING_SCOPE,
    "limit_tools": CancelSource.LIMIT,
}


@attrs.frozen
class LoopStep:
    think: int  # steps the model call takes before its first chunk (>= 1)
    tools: tuple[int, ...]  # how long each tool of the step sleeps
    sync: tuple[bool, ...] = ()  # which of them are plain ``def`` tools (run in a thread)


@attrs.frozen
class ToolCase:
    host: str
    mechanism: str
    steps: tuple[LoopStep, ...]
    answer: int  # the final model call's first-chunk delay
    at: float  # timed mechanisms: seconds into the timeline
    limit: int  # limit_tools: max_tool_calls

    @property
    def category(self) -> str:
        return f"tool loop {self.host}: {self.mechanism}, {self.phase()}"

    def phase(self) -> str:
        if self.mechanism == "none":
            return "no cancel"
        if self.mechanism == "limit_tools":
            return "at a tool's start"
        at, now = self.at / STEP, 0
        for step in self.steps:
            if at < now + step.think:
                return "in a model call"
            now += step.think
            if at < now + max(step.tools):
                return "while tools run"
            now += max(step.tools)
        return "in the final model call"

    def end(self) -> int:
        return sum(s.think + max(s.tools) for s in self.steps) + self.answer


def _step(think: int, tools: list[tuple[int, bool]]) -> LoopStep:
    return LoopStep(think, tuple(d for d, _ in tools), tuple(sync for _, sync in tools))


@st.composite
def tool_cases(draw: st.DrawFn) -> ToolCase:
    mechanism = draw(st.sampled_from(MECHANISMS))
    steps = tuple(
        draw(
            st.lists(
                st.builds(
                    _step,
                    think=st.integers(1, 3),
                    tools=st.lists(
                        st.tuples(st.integers(1, 4), st.sampled_from([False, False, True])),
                        min_size=1,
                        max_size=3,
                    ),
                ),
                min_size=1,
                max_size=3,
            )
        )
    )
    answer = draw(st.integers(1, 3))
    case = ToolCase(draw(st.sampled_from(["simple", "streaming"])), mechanism, steps, answer, 0, 0)
    if mechanism == "limit_tools":
        total = sum(len(s.tools) for s in steps)
        return attrs.evolve(case, limit=draw(st.integers(0, total - 1)))
    if mechanism != "none":
        return attrs.evolve(case, at=(draw(st.integers(0, case.end() - 1)) + 0.5) * STEP)
    return case


@attrs.frozen
class Expected:
    status: Status
    statuses: tuple[tuple[str, ToolCallStatus], ...]  # (call id, status) of started tools
    model_calls: int


def expect(case: ToolCase) -> Expected:
    cancel = case.at / STEP if case.mechanism not in ("none", "limit_tools") else None
    started: list[tuple[str, ToolCallStatus]] = []
    now, calls, tools_started = 0.0, 0, 0
    for index, step in enumerate(case.steps):
        calls += 1
        now += step.think
        if cancel is not None and cancel < now:
            return Expected(Status.CANCELED, tuple(started), calls)
        for slot, duration in enumerate(step.tools):
            if case.mechanism == "limit_tools" and tools_started >= case.limit:
                # The limit cancels the execution: this step's calls already started stop.
                stopped = [(i, ToolCallStatus.CANCELLED) for i, _ in started[len(started) - slot :]]
                return Expected(Status.CANCELED, (*started[: len(started) - slot], *stopped), calls)
            tools_started += 1
            finished = cancel is None or now + duration < cancel
            status = ToolCallStatus.OK if finished else ToolCallStatus.CANCELLED
            started.append((f"s{index}t{slot}", status))
        now += max(step.tools)
        if cancel is not None and cancel < now:
            return Expected(Status.CANCELED, tuple(started), calls)
    calls += 1
    now += case.answer
    if cancel is not None and cancel < now:
        return Expected(Status.CANCELED, tuple(started), calls)
    return Expected(Status.SUCCEEDED, tuple(started), calls)


async def run_case(case: ToolCase) -> bool:
    baseline = trio.lowlevel.current_statistics().tasks_living
    cleaned: list[str] = []
    hooks: list[agtl.Result[Any]] = []

    @agtl.tool
    async def work(ticket: str, steps: int) -> str:
        """Work for a while."""
        try:
            await trio.sleep(steps * STEP)
        finally:
            cleaned.append(ticket)
        return f"done {ticket}"

    token = trio.lowlevel.current_trio_token()

    @agtl.tool
    def work_sync(ticket: str, steps: int) -> str:
        """Work for a while, in a thread (it waits on the run's virtual clock)."""
        try:
            trio.from_thread.run(trio.sleep, steps * STEP, trio_token=token)
        finally:
            cleaned.append(ticket)
        return f"done {ticket}"

    replies = [
        Reply(
            "thinking",
            first_delay=step.think * STEP,
            tool_calls=[
                ToolCallRequest(
                    f"s{i}t{j}",
                    "work_sync" if j < len(step.sync) and step.sync[j] else "work",
                    json.dumps({"ticket": f"s{i}t{j}", "steps": d}),
                )
                for j, d in enumerate(step.tools)
            ],
        )
        for i, step in enumerate(case.steps)
    ]
    replies.append(Reply("answer", first_delay=case.answer * STEP))
    provider = ScriptedProvider(*replies)
    signal = CancelSignal()
    kwargs: dict[str, Any] = {}
    if case.mechanism == "signal":
        kwargs["signal"] = signal
    elif case.mechanism == "timeout":
        kwargs["timeout"] = case.at
    elif case.mechanism == "limit_tools":
        kwargs["limits"] = UsageLimits(max_tool_calls=case.limit)

    async def body(session: Session) -> str:
        session.on_done(hooks.append)
        reply = await session.generate_text(prompt="go", tools=[work, work_sync], max_steps=10)
        return reply.text

    execution: agtl.Execution[Any]
    if case.host == "simple":
        execution = provider.simple_execution(body, **kwargs)
    else:

        async def gen(session: Session) -> AsyncIterator[Event]:
            yield await session.done(await body(session))

        execution = provider.streaming_execution(gen, **kwargs)
    ended: list[bool] = []

    async def consume() -> None:
        async for _ in execution.stream():  # type: ignore[union-attr]
            pass
        ended.append(True)

    escaped = False
    fire_scope = trio.CancelScope()
    with trio.CancelScope() as outer:
        if case.mechanism == "enclosing":
            outer.deadline = trio.current_time() + case.at
        with trio.fail_after(3600):  # virtual: a hang trips it at once
            async with trio.open_nursery() as helpers:
                if case.mechanism in ("handle", "signal"):

                    async def fire() -> None:
                        with fire_scope:
                            await trio.sleep(case.at)
                            if case.mechanism == "signal":
                                signal.cancel("fuzz")
                            else:
                                execution.cancel("fuzz")

                    helpers.start_soon(fire)
                try:
                    async with execution:
                        if case.host == "streaming":
                            helpers.start_soon(consume)
                        await execution.result()
                except trio.Cancelled:
                    escaped = True
                    raise
                finally:
                    fire_scope.cancel()
    result = execution.outcome
    assert result is not None
    expected = expect(case)
    assert result.status is expected.status, (result, result.error, expected)
    if case.mechanism != "none" and expected.status is Status.CANCELED:
        assert result.cancel is not None
        assert result.cancel.source is SOURCES[case.mechanism], result.cancel
    got = tuple((c.call_id, c.status) for c in result.summary.tool_calls)
    assert sorted(got, key=str) == sorted(expected.statuses, key=str), (got, expected)
    assert sorted(cleaned) == sorted(call_id for call_id, _ in expected.statuses)
    assert result.summary.llm_call_count == expected.model_calls
    assert hooks == [result]
    if case.host == "streaming" and not escaped:
        assert ended == [True], "the stream consumer did not end by itself"
    assert escaped == (case.mechanism == "enclosing" and expected.status is Status.CANCELED)
    assert trio.lowlevel.current_statistics().tasks_living == baseline
    assert not [t for t in threading.enumerate() if t.name.startswith("agtl-tool-")]
    return result.status is Status.CANCELED


@settings(
    max_examples=cases(full=2000, quick=200),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(case=tool_cases())
def test_a_tool_loop_cancelled_anywhere_holds_the_invariants(case: ToolCase, tally: Tally) -> None:
    tally.start(case.category, key=case)
    # A sync tool's thread reaches the virtual clock (its sleep) and hands its result back
    # through the run's token a moment of real time after the trio side waits for it: the
    # clock must not jump meanwhile, so cases with sync tools jump only after 20 ms idle.
    threads = any(any(step.sync) for step in case.steps)
    clock = trio.testing.MockClock(autojump_threshold=SYNC_AUTOJUMP if threads else 0)
    cancelled = trio.run(run_case, case, clock=clock)
    tally.hold(case.category, landed=cancelled)
