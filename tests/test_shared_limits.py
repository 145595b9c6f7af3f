"""Limits a provider's executions share (provider.with_limits): concurrency, per-minute
windows, FIFO admission, a wait that every cancel and the call's deadlines reach, the pause
and slow-down after a 429, and permits always given back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.lowlevel

import agtl
from agtl import _limiter
from agtl.backend import CallReport, GenerationRequest, GenerationStream, report_rate_limit
from agtl.testing import Reply, ScriptedProvider

DEADLINE = 10


class Gauge:
    """Counts the calls that reach the model at once, and their order."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.order: list[str] = []

    def provider(self, seconds: float = 0.05) -> agtl.Provider:
        gauge = self

        class Counted(ScriptedProvider):
            async def start_generation(self, request: GenerationRequest) -> GenerationStream:
                return _Counting(await super().start_generation(request), gauge, request)

        return Counted(respond=lambda request: Reply("ok", first_delay=seconds))


class _Counting(GenerationStream):
    def __init__(self, inner: GenerationStream, gauge: Gauge, request: GenerationRequest):
        self.inner, self.gauge, self.started, self.request = inner, gauge, False, request

    async def next_delta(self) -> str | None:
        if not self.started:
            self.started = True
            self.gauge.now += 1
            self.gauge.most = max(self.gauge.most, self.gauge.now)
            self.gauge.order.append(self.request.messages[-1].content)
        return await self.inner.next_delta()

    def report(self) -> CallReport:
        return self.inner.report()

    async def aclose(self) -> None:
        if self.started:
            self.gauge.now -= 1
        await self.inner.aclose()


def ask(prompt: str, **options: Any) -> Callable[[agtl.Session], Any]:
    async def workflow(session: agtl.Session) -> str:
        return (await session.generate_text(prompt=prompt, **options)).text

    return workflow


async def run_all(provider: agtl.Provider, count: int) -> list[agtl.Result[Any]]:
    results: list[agtl.Result[Any]] = []

    async def one(i: int) -> None:
        results.append(await provider.simple_execution(ask(f"q{i}")))

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, i)
                await trio.lowlevel.checkpoint()  # in order: FIFO is then checkable
    return results


async def test_concurrency_is_bounded_fifo_and_the_wait_is_recorded() -> None:
    gauge = Gauge()
    provider = gauge.provider().with_limits(max_concurrent=2)
    results = await run_all(provider, 8)
    assert all(r.succeeded for r in results)
    assert gauge.most == 2
    assert gauge.order == [f"q{i}" for i in range(8)]  # first come, first served
    waits = sorted(float(str(r.summary.llm_calls[0].details["queue_wait"])) for r in results)
    assert waits[0] < 0.01
    assert waits[-1] >= 0.15  # the last two waited for three rounds of 0.05 s
    limits = provider.limits
    assert limits is not None
    assert (limits.in_flight, limits.waiting) == (0, 0)


async def test_copies_share_the_limits_and_a_replayed_call_waits_for_nothing() -> None:
    gauge = Gauge()
    limited = gauge.provider().with_limits(max_concurrent=1)
    copy = limited.with_default_options(temperature=0)
    assert copy.limits is limited.limits
    journal = agtl.CallJournal()
    first = await limited.with_journal(journal).simple_execution(ask("once"))
    assert first.succeeded
    # Replayed while another call holds the only slot: no wait at all.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_all, copy, 1)
        await trio.sleep(0.01)
        assert limited.limits is not None
        assert limited.limits.in_flight == 1
        again = agtl.CallJournal(journal.entries)
        with trio.fail_after(0.04):
            replayed = await limited.with_journal(again).simple_execution(ask("once"))
    assert replayed.summary.llm_calls[0].replayed
    assert gauge.order == ["once", "q0"]


async def test_a_wait_ends_with_any_cancel_or_the_calls_deadline_and_gives_back_its_place() -> None:
    gauge = Gauge()
    provider = gauge.provider(seconds=0.3).with_limits(max_concurrent=1)
    signal = agtl.CancelSignal()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_all, provider, 1)  # holds the slot for 0.3 s
        await trio.sleep(0.01)
        queued = provider.simple_execution(ask("queued"), signal=signal)
        timed = provider.simple_execution(ask("timed", first_token_timeout=0.15))
        outcomes: dict[str, agtl.Result[Any]] = {}

        async def keep(name: str, execution: Any) -> None:
            outcomes[name] = await execution

        nursery.start_soon(keep, "queued", queued)
        nursery.start_soon(keep, "timed", timed)
        await trio.sleep(0.02)
        assert provider.limits is not None
        assert provider.limits.waiting == 2
        signal.cancel("the user left the queue")
    canceled, timed_out = outcomes["queued"], outcomes["timed"]
    assert canceled.canceled
    assert canceled.summary.llm_calls[0].usage.output_tokens == 0  # never reached the model
    assert float(str(canceled.summary.llm_calls[0].details["queue_wait"])) > 0
    assert isinstance(timed_out.error, agtl.FirstTokenTimeoutError)
    assert gauge.order == ["q0"]
    assert (provider.limits.in_flight, provider.limits.waiting) == (0, 0)
    # The places given back are usable at once.
    with trio.fail_after(1):
        assert (await provider.simple_execution(ask("after"))).succeeded


async def test_per_minute_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_limiter, "WINDOW", 0.2)  # a "minute" of 0.2 s
    gauge = Gauge()
    requests = gauge.provider(seconds=0.0).with_limits(requests_per_minute=3)
    started = trio.current_time()
    results = await run_all(requests, 7)
    assert all(r.succeeded for r in results)
    # 7 calls at 3 per window: the last starts two windows in.
    assert trio.current_time() - started >= 0.4
    tokens = gauge.provider(seconds=0.0).with_limits(tokens_per_minute=5)
    started = trio.current_time()
    results = await run_all(tokens, 4)  # about 4 tokens a call: one per window
    assert trio.current_time() - started >= 0.2
    assert all(r.succeeded for r in results)


class _RateLimited(agtl.Provider):
    """Its first call hears a 429 (retry after 0.2 s) and then answers; the rest answer."""

    name = "ratelimited"

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.starts: list[float] = []

    async def start_generation(self, request: GenerationRequest) -> GenerationStream:
        self.calls += 1
        return _Once(self, self.calls == 1)


class _Once(GenerationStream):
    def __init__(self, owner: _RateLimited, limited: bool) -> None:
        self.owner, self.limited, self.done = owner, limited, False

    async def next_delta(self) -> str | None:
        if self.done:
            return None
        self.done = True
        if self.limited:
            report_rate_limit(0.2)
            await trio.sleep(0.2)
        self.owner.starts.append(trio.current_time())
        await trio.sleep(0.01)
        return "ok"

    def report(self) -> CallReport:
        return CallReport(agtl.Usage(1, 1), agtl.StopReason.EOS if self.done else None)

    async def aclose(self) -> None:
        pass


async def test_a_429_pauses_every_call_and_halves_the_concurrency_which_grows_back() -> None:
    backend = _RateLimited()
    provider = backend.with_default_model("m").with_limits(max_concurrent=4)
    limits = provider.limits
    assert limits is not None
    began = trio.current_time()
    results: list[agtl.Result[Any]] = []

    async def three() -> None:
        results.extend(await run_all(provider, 3))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(three)
        await trio.sleep(0.05)  # the first call has heard its 429
        assert limits.rate_limited == 1
        assert limits.concurrency == 2
        assert 0 < limits.paused_for <= 0.2
    assert all(r.succeeded for r in results)
    # The calls admitted after the 429 waited for its retry-after like the one that got it.
    assert sum(1 for t in backend.starts if t - began >= 0.2) == 3
    # Each run of as many good calls as the concurrency adds one back: 3 calls since, 2 of
    # them made a run of 2 (-> 3); 2 more make a run of 3 (-> 4), the maximum.
    assert limits.concurrency == 3
    await run_all(provider, 2)
    assert limits.concurrency == 4
    await run_all(provider, 8)
    assert limits.concurrency == 4


def test_bad_limits_are_refused() -> None:
    provider = ScriptedProvider()
    with pytest.raises(agtl.InvalidArgumentError, match="give at least one limit"):
        provider.with_limits()
    with pytest.raises(agtl.InvalidArgumentError, match="max_concurrent"):
        provider.with_limits(max_concurrent=0)
    with pytest.raises(agtl.InvalidArgumentError, match="requests_per_minute"):
        provider.with_limits(requests_per_minute=True)


@pytest.mark.parametrize("source", ["handle", "signal", "timeout", "scope"])
async def test_every_cancel_source_reaches_a_queued_call(source: str) -> None:
    gauge = Gauge()
    provider = gauge.provider(seconds=0.3).with_limits(max_concurrent=1)
    limits = provider.limits
    assert limits is not None
    signal = agtl.CancelSignal()
    execution = provider.simple_execution(
        ask("queued"), signal=signal, timeout=0.05 if source == "timeout" else None
    )
    ended = trio.Event()

    async def waiter(scope: trio.CancelScope) -> None:
        with scope:
            await execution.result()
        ended.set()

    scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_all, provider, 1)  # holds the only slot for 0.3 s
        await trio.sleep(0.01)
        nursery.start_soon(waiter, scope)
        await trio.sleep(0.02)
        assert limits.waiting == 1
        if source == "handle":
            execution.cancel("the user left")
        elif source == "signal":
            signal.cancel("the user left")
        elif source == "scope":
            scope.cancel()  # the task awaiting it goes away
        with trio.fail_after(0.2):  # long before the slot frees
            await ended.wait()
        assert limits.waiting == 0  # its place in the queue went with it
        assert limits.in_flight == 1  # only the holder
    assert (limits.waiting, limits.in_flight) == (0, 0)
    assert gauge.order == ["q0"]
    if source != "scope":
        result = execution.outcome
        assert result is not None
        assert result.canceled
        assert result.summary.llm_calls[0].usage.output_tokens == 0
