"""Cancel at generated points, by every mechanism, on both hosts (scripted provider).

Each case is a workflow of a few streamed calls with pauses between them, run on trio's
autojump clock, so its timeline is exact: call ``i`` starts at a known time, its chunks
arrive at known times, and the terminal event lands at ``end``. A cancel is aimed at a
time between two of those instants (never on one), or at a discrete point (before the
start, inside the on_done hook, after the terminal event). The expected outcome follows
from the timeline, and every case checks the invariants:

* exactly one frozen Result, the same object from every ``result()`` and ``outcome``;
* the status and cancel source the classification rules give for this timeline;
* a summary with one entry per call started, usage never below the deltas delivered;
* the on_done hook ran exactly once (when the workflow got to register it);
* every stream consumer ended, having seen exactly the result's events;
* no task left behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agtl
from agtl import CancelSignal, Event, Session, UsageLimits
from agtl.result import CancelSource, Status
from agtl.testing import Reply, ScriptedProvider
from tests.reliability.conftest import Tally, cases

STEP = 0.1  # every scripted instant is a multiple of this
TIMED = ("handle", "signal", "signal_deadline", "timeout", "enclosing")
POINTS = ("before_begin", "in_hook", "after_terminal")
POINT_NAMES = {
    "before_begin": "before the start",
    "in_hook": "inside the on_done hook",
    "after_terminal": "after the terminal event",
}


@attrs.frozen
class Call:
    words: int
    first_delay: int  # steps
    delay: int  # steps


@attrs.frozen
class Case:
    host: str  # simple | streaming
    form: str  # await | async_with
    mechanism: str  # none, a TIMED one, limit_requests, limit_tokens
    point: str  # at_time or one of POINTS
    at: float  # for at_time: seconds, always between two scripted instants
    calls: tuple[Call, ...]
    gap: int  # steps slept before every call after the first
    consumers: int
    limit: int

    @property
    def category(self) -> str:
        where = POINT_NAMES[self.point] if self.point != "at_time" else self.phase()
        return f"scripted {self.host}: {self.mechanism}, {where}"

    def phase(self) -> str:
        """Where on the timeline ``at`` falls."""
        if self.mechanism not in TIMED:
            return "own budget"
        at, now = self.at / STEP, 0.0
        for index, call in enumerate(self.calls):
            if index:
                now += self.gap
                if at < now:
                    return "between calls"
            if at < now + call.first_delay:
                return "in prefill"
            now += call.first_delay + call.delay * (call.words - 1)
            if at < now:
                return "mid-stream"
        return "after the terminal event" if self.calls else "no call made"


@st.composite
def case_strategy(draw: st.DrawFn) -> Case:
    host = draw(st.sampled_from(["simple", "streaming"]))
    mechanism = draw(st.sampled_from(["none", *TIMED, "limit_requests", "limit_tokens"]))
    if mechanism in ("handle", "signal"):
        point = draw(st.sampled_from(["at_time", *POINTS]))
    else:
        point = "at_time"
    calls = tuple(
        draw(
            st.lists(
                st.builds(
                    Call,
                    words=st.integers(1, 5),
                    first_delay=st.integers(0, 4),
                    delay=st.integers(0, 3),
                ),
                max_size=3,
            )
        )
    )
    gap = draw(st.integers(0, 3))
    horizon = sum(c.first_delay + c.delay * (c.words - 1) for c in calls) + gap * len(calls)
    at = (draw(st.integers(0, horizon + 2)) + 0.5) * STEP
    form = "async_with" if host == "streaming" else draw(st.sampled_from(["await", "async_with"]))
    consumers = draw(st.integers(0, 2)) if host == "streaming" else 0
    limit = draw(st.integers(0, 8))
    return Case(host, form, mechanism, point, at, calls, gap, consumers, limit)


@attrs.frozen
class Expected:
    status: Status
    source: CancelSource | None
    calls_started: int


def expect(case: Case) -> Expected:
    """The outcome the timeline gives (times in steps, cancels between steps)."""
    cancel_at = case.at / STEP if case.point == "at_time" and case.mechanism in TIMED else None
    if case.point == "before_begin":
        return Expected(Status.CANCELED, _source(case), 0)
    now = 0.0
    started = 0
    output = 0
    for index, call in enumerate(case.calls):
        if index:
            now += case.gap
            if cancel_at is not None and cancel_at < now:
                return Expected(Status.CANCELED, _source(case), started)
        if case.mechanism == "limit_requests" and index >= case.limit:
            return Expected(Status.CANCELED, CancelSource.LIMIT, started)
        started += 1
        now += call.first_delay + call.delay * (call.words - 1)
        if cancel_at is not None and cancel_at < now:
            return Expected(Status.CANCELED, _source(case), started)
        output += call.words
        if case.mechanism == "limit_tokens" and output > case.limit:
            return Expected(Status.CANCELED, CancelSource.LIMIT, started)
    if cancel_at is not None and cancel_at < now:
        return Expected(Status.CANCELED, _source(case), started)
    return Expected(Status.SUCCEEDED, None, started)


def _source(case: Case) -> CancelSource:
    return {
        "handle": CancelSource.HANDLE,
        "signal": CancelSource.SIGNAL,
        "signal_deadline": CancelSource.SIGNAL,
        "timeout": CancelSource.TIMEOUT,
        "enclosing": CancelSource.ENCLOSING_SCOPE,
    }[case.mechanism]


def _text(call: Call) -> tuple[str, ...]:
    return tuple(f"w{i} " for i in range(call.words))


async def run_case(case: Case) -> None:
    baseline_tasks = trio.lowlevel.current_statistics().tasks_living
    replies = [
        Reply(_text(c), first_delay=c.first_delay * STEP, delay=c.delay * STEP) for c in case.calls
    ]
    provider = ScriptedProvider(*replies)
    hook_results: list[agtl.Result[Any]] = []
    registered: list[bool] = []
    delivered: list[int] = []
    signal = CancelSignal()
    kwargs: dict[str, Any] = {}
    if case.mechanism == "signal":
        kwargs["signal"] = signal
    elif case.mechanism == "signal_deadline":
        kwargs["signal"] = CancelSignal.after(case.at, reason="fuzz deadline")
    elif case.mechanism == "timeout":
        kwargs["timeout"] = case.at
    elif case.mechanism == "limit_requests":
        kwargs["limits"] = UsageLimits(max_requests=case.limit)
    elif case.mechanism == "limit_tokens":
        kwargs["limits"] = UsageLimits(max_output_tokens=case.limit)

    def fire() -> None:
        if case.mechanism == "signal":
            signal.cancel("fuzz")
        else:
            execution.cancel("fuzz")

    async def hook(result: agtl.Result[Any]) -> None:
        hook_results.append(result)
        if case.point == "in_hook":
            fire()  # the outcome is frozen: this must change nothing
            await trio.sleep(STEP)

    async def body(session: Session) -> str:
        session.on_done(hook)
        registered.append(True)
        parts: list[str] = []
        for index in range(len(case.calls)):
            if index:
                await trio.sleep(case.gap * STEP)
            async with session.stream_text(prompt=f"call {index}") as stream:
                delivered.append(0)
                async for delta in stream:
                    delivered[-1] += 1
                    parts.append(delta)
        return "".join(parts)

    execution: agtl.Execution[Any]
    if case.host == "simple":
        execution = provider.simple_execution(body, **kwargs)
    else:

        async def gen(session: Session) -> AsyncIterator[Event]:
            value = await body(session)
            yield session.emit("text", value)
            yield await session.done(value)

        execution = provider.streaming_execution(gen, **kwargs)

    if case.point == "before_begin":
        fire()
    seen: list[list[Event]] = []

    async def consume() -> None:
        events: list[Event] = []
        seen.append(events)
        async for event in execution.stream():  # type: ignore[union-attr]
            events.append(event)

    escaped_cancel = False
    with trio.CancelScope() as outer:
        if case.mechanism == "enclosing":
            outer.deadline = trio.current_time() + case.at
        async with trio.open_nursery() as helpers:
            if case.point == "at_time" and case.mechanism in ("handle", "signal"):

                async def fire_later() -> None:
                    await trio.sleep(case.at)
                    fire()

                helpers.start_soon(fire_later)
            try:
                if case.form == "await":
                    result = await execution.result()
                else:
                    async with execution:
                        for _ in range(case.consumers):
                            helpers.start_soon(consume)
                        result = await execution.result()
            except trio.Cancelled:
                escaped_cancel = True
                raise
            finally:
                helpers.cancel_scope.cancel()
    assert outer.cancelled_caught == escaped_cancel
    outcome = execution.outcome
    assert outcome is not None
    result = outcome

    if case.point == "after_terminal":
        fire()

    # exactly one frozen Result
    assert await execution.result() is result
    assert execution.outcome is result
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.status = Status.FAILED  # type: ignore[misc]
    # status and source
    expected = expect(case)
    assert result.status is expected.status, (result, expected)
    if expected.source is None:
        assert result.cancel is None
        assert result.value == "".join("".join(_text(c)) for c in case.calls)
    else:
        assert result.cancel is not None
        assert result.cancel.source is expected.source, (result.cancel, expected)
    assert escaped_cancel == (expected.source is CancelSource.ENCLOSING_SCOPE)
    # summary and usage
    calls = result.summary.llm_calls
    assert len(calls) == expected.calls_started == len(delivered)
    for call, deltas in zip(calls, delivered, strict=True):
        assert (call.usage.output_tokens or 0) >= deltas
    # hooks: exactly once, with the result
    assert hook_results == ([result] if registered else [])
    # consumers ended and saw every event
    assert len(seen) == case.consumers
    for events in seen:
        assert tuple(events) == result.events
    # nothing left behind
    assert trio.lowlevel.current_statistics().tasks_living == baseline_tasks


@settings(
    max_examples=cases(full=5000, quick=300),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(case=case_strategy())
def test_cancel_anywhere_holds_the_invariants(case: Case, tally: Tally) -> None:
    tally.start(case.category)
    trio.run(run_case, case, clock=trio.testing.MockClock(autojump_threshold=0))
    tally.hold(case.category)
