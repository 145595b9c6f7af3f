"""Cancel at generated points, by every mechanism, on both hosts (scripted provider).

Each case is a workflow of a few streamed calls with pauses between them, run on trio's
autojump clock, so its timeline is exact: call ``i`` starts at a known time, its chunks
arrive at known times, and the terminal event lands at ``end``. Each case first draws a cell,
a mechanism and a point, uniformly: a timed cancel aimed inside a phase of the timeline (a
call's prefill, mid-stream, between two calls; always between two scripted instants, never
on one), a cancel before the start, a usage limit below what the script needs, or a control
that must cancel nothing (no cancel at all, a cancel inside the on_done hook or after the
terminal event). The expected outcome follows from the timeline, and every case checks:

* exactly one frozen Result, the same object from every ``result()`` and ``outcome``;
* the status and cancel source the classification rules give for this timeline;
* a summary with one entry per call started, usage never below the deltas delivered;
* the on_done hook ran exactly once (when the workflow got to register it);
* every stream consumer ended by itself, having seen exactly the result's events;
* no task left behind;
* a cancelling cell really cancelled, and a control did not.

The report counts, per mechanism x point, the cases that really cancelled.
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
PHASES = ("prefill", "mid_stream", "between_calls")
POINTS = ("before_begin", "in_hook", "after_terminal")
POINT_NAMES = {
    "prefill": "in prefill",
    "mid_stream": "mid-stream",
    "between_calls": "between calls",
    "before_begin": "before the start",
    "in_hook": "inside the on_done hook",
    "after_terminal": "after the terminal event",
    "before_call": "at a call's start",
    "none": "no cancel",
}
#: Every (mechanism, point) the fuzz aims at, drawn uniformly. The first group must cancel;
#: the controls (no cancel, or a cancel after the outcome froze) must change nothing.
CANCELLING: tuple[tuple[str, str], ...] = (
    *((mechanism, phase) for mechanism in TIMED for phase in PHASES),
    ("handle", "before_begin"),
    ("signal", "before_begin"),
    ("limit_requests", "before_call"),
    ("limit_tokens", "mid_stream"),
)
CONTROLS: tuple[tuple[str, str], ...] = (
    ("none", "none"),
    ("handle", "in_hook"),
    ("signal", "in_hook"),
    ("handle", "after_terminal"),
    ("signal", "after_terminal"),
)
#: The full profile must give every cancelling cell at least this many cases that cancelled.
CELL_TARGET = 50
#: Virtual seconds: far past any script's end, reached at once (autojump) if something hangs.
HANG_DEADLINE = 3600


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
    point: str  # a PHASES entry for timed mechanisms, else one of POINTS / before_call / none
    at: float  # timed mechanisms: seconds, always between two scripted instants
    calls: tuple[Call, ...]
    gap: int  # steps slept before every call after the first
    consumers: int
    limit: int

    @property
    def cell(self) -> str:
        return f"{self.mechanism}, {POINT_NAMES[self.point]}"

    @property
    def category(self) -> str:
        return f"scripted {self.host}: {self.cell}"

    @property
    def timed(self) -> bool:
        return self.mechanism in TIMED and self.point in PHASES

    def phase(self) -> str:
        """Where on the timeline ``at`` falls."""
        at, now = self.at / STEP, 0.0
        for index, call in enumerate(self.calls):
            if index:
                now += self.gap
                if at < now:
                    return "between_calls"
            if at < now + call.first_delay:
                return "prefill"
            now += call.first_delay + call.delay * (call.words - 1)
            if at < now:
                return "mid_stream"
        return "after_terminal" if self.calls else "no call made"


def _phase_interval(calls: tuple[Call, ...], gap: int, target: int, phase: str) -> range:
    """The whole steps ``k`` such that ``k + 0.5`` lies in ``phase`` of call ``target``."""
    start = 0
    for index, call in enumerate(calls):
        if index:
            if index == target and phase == "between_calls":
                return range(start, start + gap)
            start += gap
        if index == target:
            if phase == "prefill":
                return range(start, start + call.first_delay)
            first = start + call.first_delay
            return range(first, first + call.delay * (call.words - 1))
        start += call.first_delay + call.delay * (call.words - 1)
    raise AssertionError("no such call")


@st.composite
def case_strategy(draw: st.DrawFn) -> Case:
    mechanism, point = draw(st.sampled_from([*CANCELLING, *CONTROLS]))
    host = draw(st.sampled_from(["simple", "streaming"]))
    phase = point if mechanism in TIMED and point in PHASES else None
    between = phase == "between_calls"
    at_least = 2 if between else 1 if phase or mechanism.startswith("limit") else 0
    count = draw(st.integers(at_least, 3))
    target = draw(st.integers(1 if between else 0, max(0, count - 1)))
    calls = []
    for index in range(count):
        aimed = index == target
        words = draw(st.integers(2 if aimed and phase == "mid_stream" else 1, 5))
        first_delay = draw(st.integers(1 if aimed and phase == "prefill" else 0, 4))
        delay = draw(st.integers(1 if aimed and phase == "mid_stream" else 0, 3))
        calls.append(Call(words, first_delay, delay))
    gap = draw(st.integers(1 if between else 0, 3))
    at = 0.0
    if phase is not None:
        steps = _phase_interval(tuple(calls), gap, target, phase)
        at = (draw(st.sampled_from(steps)) + 0.5) * STEP
    limit = 0
    if mechanism == "limit_requests":
        limit = draw(st.integers(0, count - 1))  # fewer requests than the script makes
    elif mechanism == "limit_tokens":
        limit = draw(st.integers(0, sum(c.words for c in calls) - 1))  # fewer tokens
    form = "async_with" if host == "streaming" else draw(st.sampled_from(["await", "async_with"]))
    consumers = draw(st.integers(0, 2)) if host == "streaming" else 0
    return Case(host, form, mechanism, point, at, tuple(calls), gap, consumers, limit)


@attrs.frozen
class Expected:
    status: Status
    source: CancelSource | None
    calls_started: int


def expect(case: Case) -> Expected:
    """The outcome the timeline gives (times in steps, cancels between steps)."""
    cancel_at = case.at / STEP if case.timed else None
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


async def run_case(case: Case) -> bool:
    """Run one case, check every invariant; whether the execution was cancelled."""
    if case.timed:
        assert case.phase() == case.point, case  # the strategy aims inside the phase
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
    ended: list[bool] = []

    async def consume() -> None:
        events: list[Event] = []
        seen.append(events)
        async for event in execution.stream():  # type: ignore[union-attr]
            events.append(event)
        ended.append(True)  # the iterator ended by itself, nobody cancelled this consumer

    escaped_cancel = False
    fire_scope = trio.CancelScope()
    with trio.CancelScope() as outer:
        if case.mechanism == "enclosing":
            outer.deadline = trio.current_time() + case.at
        # Virtual time: a consumer that never ends trips this at once, naming the case.
        with trio.fail_after(HANG_DEADLINE):
            async with trio.open_nursery() as helpers:
                if case.timed and case.mechanism in ("handle", "signal"):

                    async def fire_later() -> None:
                        with fire_scope:
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
                    fire_scope.cancel()  # the consumers must end by themselves
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
    # consumers ended by themselves (unless an enclosing scope cancelled them) and saw every
    # event
    assert len(seen) == case.consumers
    if not escaped_cancel:
        assert len(ended) == case.consumers, "a stream consumer did not end by itself"
    for events in seen:
        assert tuple(events) == result.events
    # nothing left behind
    assert trio.lowlevel.current_statistics().tasks_living == baseline_tasks
    # a cancelling cell cancelled; a control did not
    assert (result.status is Status.CANCELED) == ((case.mechanism, case.point) in CANCELLING)
    return result.status is Status.CANCELED


@settings(
    max_examples=cases(full=7000, quick=700),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(case=case_strategy())
def test_cancel_anywhere_holds_the_invariants(case: Case, tally: Tally) -> None:
    tally.start(case.category, key=case)
    cancelled = trio.run(run_case, case, clock=trio.testing.MockClock(autojump_threshold=0))
    tally.hold(case.category, landed=cancelled)
