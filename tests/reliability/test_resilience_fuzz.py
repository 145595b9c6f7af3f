"""Cancels at random points of a fallback chain and of a hedge: while queued in shared limits,
during the first attempt, between attempts, while both hedged attempts run, or not at all.

Each case draws how the primary behaves (fails before its first output, answers slowly, or
at once), how soon the secondary answers, whether the primary's shared limits are busy (so
the call queues), and when the execution is cancelled. Invariants, whatever was drawn:

* the text the user got (the value, or the partial of a cancelled call) comes from exactly
  one attempt: never a mix of two backends;
* every attempt is recorded once, and the call's usage is the sum of its attempts';
* at most one attempt answered (exactly one when the call succeeded; none when it failed,
  which it does only when every backend failed or gave nothing in time);
* every backend stream that was opened was closed exactly once, and the limits' permits are
  all back (nothing in flight, nobody waiting): no task and no connection left.
"""

from __future__ import annotations

from typing import Any

import attrs
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agtl
from agtl.backend import CallReport, GenerationRequest, GenerationStream
from agtl.testing import Reply, ScriptedProvider
from tests.reliability.conftest import Tally, cases

CATEGORY = "cancels at random points of a fallback chain or a hedge"


@attrs.frozen
class Plan:
    kind: str  # "fallback" or "hedge"
    primary: str  # "error", "slow" or "fast"
    secondary_delay: float
    busy_limits: bool
    cancel_after: float | None


plans = st.builds(
    Plan,
    kind=st.sampled_from(("fallback", "hedge")),
    primary=st.sampled_from(("error", "slow", "fast")),
    secondary_delay=st.sampled_from((0.0, 0.01, 0.03)),
    busy_limits=st.booleans(),
    cancel_after=st.sampled_from((None, 0.0, 0.001, 0.005, 0.01, 0.02, 0.04, 0.08)),
)


class Streams:
    """Counts the backend streams opened and closed."""

    def __init__(self) -> None:
        self.opened = 0
        self.closes: list[int] = []


class Tracked(ScriptedProvider):
    def __init__(self, streams: Streams, reply: Reply, name: str) -> None:
        super().__init__(respond=lambda request: reply, model=name)
        self.streams = streams

    async def start_generation(self, request: GenerationRequest) -> GenerationStream:
        inner = await super().start_generation(request)
        self.streams.opened += 1
        self.streams.closes.append(0)
        return _Tracked(inner, self.streams, len(self.streams.closes) - 1)


class _Tracked(GenerationStream):
    def __init__(self, inner: GenerationStream, streams: Streams, index: int) -> None:
        self.inner, self.streams, self.index = inner, streams, index

    async def next_delta(self) -> str | None:
        return await self.inner.next_delta()

    def report(self) -> CallReport:
        return self.inner.report()

    async def aclose(self) -> None:
        self.streams.closes[self.index] += 1
        await self.inner.aclose()


def replies(plan: Plan) -> tuple[Reply, Reply]:
    words = [f"P{i} " for i in range(6)]
    if plan.primary == "error":
        primary = Reply(first_delay=0.005, error=agtl.ServerError("down", status_code=503))
    elif plan.primary == "slow":
        primary = Reply(words, first_delay=0.05, delay=0.002)
    else:
        primary = Reply(words, delay=0.002)
    secondary = Reply([f"S{i} " for i in range(6)], first_delay=plan.secondary_delay, delay=0.002)
    return primary, secondary


async def run_case(plan: Plan) -> tuple[agtl.Result[Any], Streams, agtl.SharedLimits]:
    streams = Streams()
    first_reply, second_reply = replies(plan)
    primary = Tracked(streams, first_reply, "first").with_limits(max_concurrent=1)
    limits = primary.limits
    assert limits is not None
    secondary = Tracked(streams, second_reply, "second")
    if plan.kind == "fallback":
        provider: agtl.Provider = primary.with_fallback(
            secondary, first_token_timeout=0.02, failures=10**6
        )
    else:
        provider = primary.with_hedge(secondary, after=0.01)
    signal = agtl.CancelSignal()

    async def workflow(session: agtl.Session) -> str:
        return (await session.generate_text(prompt="go")).text

    execution = provider.simple_execution(workflow, signal=signal)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            if plan.busy_limits:  # another call holds the primary's only slot for 20 ms
                held = trio.Event()

                async def hold() -> None:
                    await limits.admit("blocker", 1)
                    held.set()
                    await trio.sleep(0.02)
                    limits.release("blocker", ended_well=True)

                nursery.start_soon(hold)
                await held.wait()
            nursery.start_soon(execution.result)
            if plan.cancel_after is not None:
                await trio.sleep(plan.cancel_after)
                signal.cancel("the fuzz cancelled")
    assert execution.outcome is not None
    return execution.outcome, streams, limits


@settings(
    max_examples=cases(full=400, quick=60),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(plan=plans)
def test_fallbacks_and_hedges_hold_their_invariants(plan: Plan, tally: Tally) -> None:
    tally.start(CATEGORY, key=repr(plan))
    result, streams, limits = trio.run(run_case, plan)
    assert (limits.in_flight, limits.waiting) == (0, 0), plan
    if not result.summary.llm_calls:  # cancelled before the call began
        assert result.canceled, plan
        assert streams.opened == 0, plan
        tally.hold(CATEGORY, landed=True)
        return
    [call] = result.summary.llm_calls
    attempts = call.details["attempts"]
    assert isinstance(attempts, list)
    # One attempt's text reaches the user, never a mix.
    text = result.value if result.succeeded else (result.partial.text if result.partial else "")
    assert isinstance(text, str)
    prefixes = {word[0] for word in text.split()}
    assert len(prefixes) <= 1, (plan, text)
    answered = [a for a in attempts if a["outcome"] == "answered"]
    assert len(answered) <= 1, (plan, attempts)
    if result.succeeded:
        assert len(answered) == 1, (plan, attempts)
        assert prefixes == {"P" if answered[0]["model"] == "first" else "S"}, (plan, attempts)
    elif result.failed:  # every backend failed or gave nothing in time
        assert {a["outcome"] for a in attempts} <= {"error", "timeout"}, (plan, attempts)
    else:
        assert result.canceled, (plan, result.error)
    # Every attempt recorded once, and the call's usage is theirs summed.
    assert len(attempts) <= streams.opened + 1, (plan, attempts)
    for kind in ("input_tokens", "output_tokens"):
        assert getattr(call.usage, kind) == sum(a["usage"][kind] for a in attempts), plan
    # Every stream closed once; the limits' permits all returned.
    assert all(count == 1 for count in streams.closes), (plan, streams.closes)
    assert (limits.in_flight, limits.waiting) == (0, 0), plan
    tally.hold(CATEGORY, landed=result.canceled)
