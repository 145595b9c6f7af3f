"""Guardrails that trip at generated points, with and without a cancel racing them.

Each case is one streamed call on trio's autojump clock (its pieces arrive at whole steps)
guarded by one guardrail: on the input (async beside the call, tripping a quarter step after
a whole step, or a plain function, which runs before the call) or on the output (tripping on
a given word, checked each piece, each sentence or at the end; async beside the call or a
plain function at once). A handle cancel may be aimed half a step after a whole step. The
outcome follows from the timeline, and every case checks:

* exactly one frozen Result, with the status the timeline gives: failed with the
  GuardrailTripped naming the guardrail when it tripped first, canceled (source ``handle``)
  when the cancel came first, succeeded otherwise;
* a trip that landed while the call streamed ended the call at that very instant (the
  call's end equals the verdict's time), with the tokens paid recorded as the call's;
* a guardrail record for the run with the verdict that happened (``cancelled`` when the
  cancel came first), and no trip recorded for a cancelled or passing case;
* the reader never got text past the trip (a plain-function output guardrail checks a piece
  before the reader gets it);
* no task left behind.
"""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agtl
from agtl import GuardrailTripped, Session, Status, StopReason
from agtl.result import CancelSource
from agtl.testing import Reply, ScriptedProvider
from tests.reliability.conftest import Tally, cases

STEP = 0.1
HANG_DEADLINE = 3600


@attrs.frozen
class Case:
    stage: str  # input | output
    kind: str  # async | sync
    every: str  # output only: chunk | sentence | end
    trip: int | None  # input async: the whole step it trips after; output: the word; None: pass
    cancel: int | None  # the whole step the handle cancel comes half a step after
    words: int
    first_delay: int
    delay: int

    @property
    def category(self) -> str:
        what = "passes" if self.trip is None else "trips"
        race = "" if self.cancel is None else ", cancel racing"
        where = self.stage if self.stage == "input" else f"output every {self.every}"
        return f"guardrails: {where} ({self.kind}) {what}{race}"

    def arrival(self, word: int) -> float:
        """When word ``word`` reaches the reader, in steps."""
        return self.first_delay + self.delay * word

    @property
    def end(self) -> float:
        return self.arrival(self.words - 1)

    def trip_time(self) -> float | None:
        """When the guardrail's verdict blocks, in steps (None: it never does)."""
        if self.trip is None:
            return None
        if self.stage == "input":
            return 0.0 if self.kind == "sync" else self.trip + 0.25
        if self.every == "chunk":
            return self.arrival(self.trip)
        return self.end  # no word ends a sentence: checked once, on the final text


@st.composite
def case_strategy(draw: st.DrawFn) -> Case:
    stage = draw(st.sampled_from(["input", "output"]))
    kind = draw(st.sampled_from(["async", "sync"]))
    every = draw(st.sampled_from(["chunk", "sentence", "end"])) if stage == "output" else "chunk"
    words = draw(st.integers(1, 6))
    delay = draw(st.integers(1, 3))
    first_delay = draw(st.integers(0, 3))
    trips = draw(st.booleans())
    trip = None
    if trips:
        trip = draw(st.integers(0, 8)) if stage == "input" else draw(st.integers(0, words - 1))
    cancel = draw(st.none() | st.integers(0, first_delay + delay * words + 2))
    return Case(stage, kind, every, trip, cancel, words, first_delay, delay)


def _guardrail(case: Case) -> agtl.Guardrail:
    if case.stage == "input":
        if case.kind == "sync":

            def sync_input(text: str) -> agtl.Verdict:
                return agtl.Verdict.ok() if case.trip is None else agtl.Verdict.block("input")

            return agtl.guardrail(sync_input, name="fuzz")

        async def async_input(text: str) -> agtl.Verdict:
            if case.trip is None:
                return agtl.Verdict.ok()
            await trio.sleep((case.trip + 0.25) * STEP)
            return agtl.Verdict.block("input")

        return agtl.guardrail(async_input, name="fuzz")
    banned = None if case.trip is None else f"w{case.trip} "

    def judge(text: str) -> agtl.Verdict:
        return agtl.Verdict.block("output") if banned and banned in text else agtl.Verdict.ok()

    if case.kind == "sync":
        return agtl.guardrail(judge, name="fuzz", every=case.every)

    async def async_judge(text: str) -> agtl.Verdict:
        await trio.lowlevel.checkpoint()
        return judge(text)

    return agtl.guardrail(async_judge, name="fuzz", every=case.every)


async def run_case(case: Case) -> bool:
    """Run one case and check it; whether the trip or the cancel drawn decided it."""
    baseline_tasks = trio.lowlevel.current_statistics().tasks_living
    text = tuple(f"w{i} " for i in range(case.words))
    provider = ScriptedProvider(
        Reply(text, first_delay=case.first_delay * STEP, delay=case.delay * STEP)
    )
    guard = _guardrail(case)
    seen: list[str] = []
    checks_input = [guard] if case.stage == "input" else []
    checks_output = [guard] if case.stage == "output" else []

    async def body(session: Session) -> str:
        async with session.stream_text(
            prompt="go", input_guardrails=checks_input, output_guardrails=checks_output
        ) as stream:
            async for delta in stream:
                seen.append(delta)
        return stream.text

    execution = provider.simple_execution(body)
    with trio.fail_after(HANG_DEADLINE):
        async with trio.open_nursery() as nursery:
            if case.cancel is not None:

                async def fire() -> None:
                    await trio.sleep((case.cancel + 0.5) * STEP)  # type: ignore[operator]
                    execution.cancel("fuzz")

                nursery.start_soon(fire)
            result = await execution.result()
            nursery.cancel_scope.cancel()
    assert await execution.result() is result
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.status = Status.FAILED  # type: ignore[misc]

    trip_at = case.trip_time()
    cancel_at = None if case.cancel is None else case.cancel + 0.5
    # Whichever comes first decides; a call that ended with no trip succeeds whatever follows.
    finished = case.end if trip_at is None else max(case.end, trip_at)
    if trip_at is not None and (cancel_at is None or trip_at < cancel_at):
        assert result.status is Status.FAILED, (case, result)
        assert isinstance(result.error, GuardrailTripped)
        assert (result.error.guardrail, result.error.stage) == ("fuzz", case.stage)
        record = result.summary.tripped_guardrail
        assert record is not None
        assert record.at == pytest.approx(trip_at * STEP)
        calls = result.summary.llm_calls
        if case.stage == "input" and case.kind == "sync":
            assert calls == ()  # it ran before the call
        else:
            [call] = calls
            assert call.stop_reason is StopReason.ERROR
            assert call.ended_at == pytest.approx(record.at)  # stopped at the trip
            assert record.tokens_paid == call.usage.output_tokens
        if case.stage == "output" and case.kind == "sync" and case.every == "chunk":
            assert f"w{case.trip} " not in "".join(seen)  # the blocked piece was held back
        landed = True
    elif cancel_at is not None and cancel_at < finished:
        assert result.status is Status.CANCELED, (case, result)
        assert result.cancel is not None
        assert result.cancel.source is CancelSource.HANDLE
        assert all(not r.tripped for r in result.summary.guardrails)
        assert all(r.verdict in ("ok", "cancelled") for r in result.summary.guardrails)
        landed = True
    else:
        assert result.status is Status.SUCCEEDED, (case, result)
        assert result.value == "".join(text)
        assert [r.verdict for r in result.summary.guardrails] == ["ok"]
        landed = trip_at is None and cancel_at is None  # a control: nothing was to land
    assert trio.lowlevel.current_statistics().tasks_living == baseline_tasks
    return landed


@settings(
    max_examples=cases(full=3000, quick=300),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(case=case_strategy())
def test_guardrails_trip_anywhere_and_hold_the_invariants(case: Case, tally: Tally) -> None:
    tally.start(case.category, key=case)
    landed = trio.run(run_case, case, clock=trio.testing.MockClock(autojump_threshold=0))
    tally.hold(case.category, landed=landed)
