"""The outcome contract, run on both hosts (simple and streaming executions)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import agtl
from agtl import CancelSignal, CancelSource, Session, Status, StopReason, UsageLimits
from agtl.testing import Reply, ScriptedProvider
from tests.conftest import Host

SLOW = Reply("one two three four five six seven eight", delay=1.0)


async def test_success_carries_value_summary_and_usage(host: Host, autojump_clock: Any) -> None:
    provider = ScriptedProvider(Reply("Paris is the capital.", delay=0.5))

    async def body(session: Session) -> str:
        reply = await session.generate_text(prompt="What is the capital of France?")
        return reply.text

    result = await host.execution(provider, body).result()

    assert result.status is Status.SUCCEEDED
    assert result.value == "Paris is the capital."
    assert result.error is None
    assert result.cancel is None
    assert result.partial is None
    summary = result.summary
    assert summary.llm_call_count == 1
    call = summary.llm_calls[0]
    assert call.stop_reason is StopReason.EOS
    assert call.usage.output_tokens == 4
    assert call.usage.input_tokens == 6
    assert call.usage.provenance is agtl.Provenance.COUNTED
    assert call.time_to_first_token == pytest.approx(0.5)
    assert summary.duration == pytest.approx(2.0)
    assert summary.cost == 0


async def test_none_is_a_valid_value(host: Host) -> None:
    async def body(session: Session) -> None:
        return None

    result = await host.execution(ScriptedProvider(), body).result()
    assert result.status is Status.SUCCEEDED
    assert result.value is None


async def test_execution_id_is_known_before_start_and_unique(host: Host) -> None:
    async def body(session: Session) -> str:
        return session.execution_id

    first = host.execution(ScriptedProvider(), body)
    second = host.execution(ScriptedProvider(), body)
    assert first.execution_id
    assert first.execution_id != second.execution_id
    result = await first.result()
    assert result.value == first.execution_id == result.execution_id
    assert result.summary.execution_id == first.execution_id


async def test_cancel_via_handle_keeps_partial_text_and_summary(
    host: Host, autojump_clock: Any
) -> None:
    provider = ScriptedProvider(SLOW)
    seen: list[str] = []

    async def body(session: Session) -> str:
        async with session.stream_text(prompt="count") as stream:
            async for delta in stream:
                seen.append(delta)
        return stream.text

    async with host.execution(provider, body) as execution:
        await trio.sleep(3.5)
        execution.cancel("user pressed stop")
        result = await execution.result()

    assert result.status is Status.CANCELED
    assert result.cancel is not None
    assert result.cancel.source is CancelSource.HANDLE
    assert result.cancel.reason == "user pressed stop"
    assert result.cancel.at == pytest.approx(3.5)
    assert seen == ["one ", "two ", "three "]
    assert result.partial is not None
    assert result.partial.text == "".join(seen)
    call = result.summary.llm_calls[0]
    assert call.stop_reason is StopReason.CANCELLED
    assert call.usage.output_tokens == 3
    with pytest.raises(agtl.ExecutionCancelled) as info:
        result.unwrap()
    assert info.value.partial.text == "one two three "
    assert info.value.execution_id == result.execution_id


async def test_cancel_via_external_signal(host: Host, autojump_clock: Any) -> None:
    signal = CancelSignal()

    async def body(session: Session) -> str:
        return (await session.generate_text(prompt="x")).text

    async with host.execution(ScriptedProvider(SLOW), body, signal=signal) as execution:
        await trio.sleep(2.5)
        signal.cancel("page closed")
        result = await execution.result()

    assert result.status is Status.CANCELED
    assert result.cancel is not None
    assert (result.cancel.source, result.cancel.reason) == (CancelSource.SIGNAL, "page closed")
    assert result.partial is not None
    assert result.partial.text == "one two "


async def test_combined_signal_and_handle_report_whichever_fired_first(
    host: Host, autojump_clock: Any
) -> None:
    async def body(session: Session) -> str:
        return (await session.generate_text(prompt="x")).text

    first_signal = CancelSignal()
    async with host.execution(
        ScriptedProvider(SLOW), body, signal=[CancelSignal(), first_signal], timeout=30
    ) as execution:
        await trio.sleep(1.5)
        first_signal.cancel("signal first")
        execution.cancel("handle second")
        result = await execution.result()
    assert result.cancel is not None
    assert result.cancel.source is CancelSource.SIGNAL
    assert result.cancel.reason == "signal first"

    signal = CancelSignal()
    async with host.execution(ScriptedProvider(SLOW), body, signal=signal) as execution:
        await trio.sleep(1.5)
        execution.cancel("handle first")
        signal.cancel("signal second")
        result = await execution.result()
    assert result.cancel is not None
    assert result.cancel.source is CancelSource.HANDLE
    assert result.cancel.reason == "handle first"


async def test_timeout_cancels_with_source_timeout(host: Host, autojump_clock: Any) -> None:
    async def body(session: Session) -> str:
        return (await session.generate_text(prompt="x")).text

    result = await host.execution(ScriptedProvider(SLOW), body, timeout=4.5).result()
    assert result.status is Status.CANCELED
    assert result.cancel is not None
    assert result.cancel.source is CancelSource.TIMEOUT
    assert result.cancel.reason == "timeout=4.5s"
    assert result.cancel.at == pytest.approx(4.5)
    assert result.summary.duration == pytest.approx(4.5)
    assert result.partial is not None
    assert result.partial.text == "one two three four "


async def test_signal_deadline_and_any_of_beat_a_later_timeout(
    host: Host, autojump_clock: Any
) -> None:
    async def body(session: Session) -> str:
        return (await session.generate_text(prompt="x")).text

    soon = CancelSignal.after(2.5, reason="budget")
    combined = agtl.any_of(CancelSignal(), soon)
    result = await host.execution(ScriptedProvider(SLOW), body, signal=combined, timeout=6).result()
    assert result.cancel is not None
    assert (result.cancel.source, result.cancel.reason) == (CancelSource.SIGNAL, "budget")
    assert result.cancel.at == pytest.approx(2.5)


async def test_timeout_earlier_than_signal_deadline_reports_timeout(
    host: Host, autojump_clock: Any
) -> None:
    async def body(session: Session) -> str:
        return (await session.generate_text(prompt="x")).text

    signal = CancelSignal.after(10)
    result = await host.execution(ScriptedProvider(SLOW), body, signal=signal, timeout=1.5).result()
    assert result.cancel is not None
    assert result.cancel.source is CancelSource.TIMEOUT


@pytest.mark.parametrize("how", ["handle", "signal", "any_of", "timeout_zero", "deadline_passed"])
async def test_cancel_before_begin_never_runs_the_workflow(
    host: Host, how: str, autojump_clock: Any
) -> None:
    provider = ScriptedProvider(SLOW)
    ran: list[bool] = []

    async def body(session: Session) -> str:
        ran.append(True)
        return (await session.generate_text(prompt="x")).text

    kwargs: dict[str, Any] = {}
    if how == "signal":
        signal = CancelSignal()
        signal.cancel("before")
        kwargs["signal"] = signal
    elif how == "any_of":
        cancelled = CancelSignal()
        cancelled.cancel("before")
        kwargs["signal"] = agtl.any_of(CancelSignal(), cancelled)
    elif how == "timeout_zero":
        kwargs["timeout"] = 0
    elif how == "deadline_passed":
        kwargs["signal"] = CancelSignal.after(1)
        await trio.sleep(2)
    execution = host.execution(provider, body, **kwargs)
    if how == "handle":
        execution.cancel("before")
    result = await execution.result()

    assert result.status is Status.CANCELED
    assert ran == []
    assert provider.calls == ()
    assert result.summary.llm_call_count == 0
    assert result.summary.total_usage == agtl.Usage.zero()
    assert result.events == ()
    expected = {
        "handle": CancelSource.HANDLE,
        "signal": CancelSource.SIGNAL,
        "any_of": CancelSource.SIGNAL,
        "timeout_zero": CancelSource.TIMEOUT,
        "deadline_passed": CancelSource.SIGNAL,
    }[how]
    assert result.cancel is not None
    assert result.cancel.source is expected
    assert result.cancel.at == 0


async def test_error_beats_cancel(host: Host, autojump_clock: Any) -> None:
    async def body(session: Session) -> str:
        await session.fail(ValueError("bad input"))
        await trio.sleep(1)
        return "unreachable"

    execution = host.execution(ScriptedProvider(), body)
    result = await execution.result()
    execution.cancel("too late")
    assert result.status is Status.FAILED
    assert isinstance(result.error, ValueError)
    assert execution.outcome is result


async def test_error_delivered_after_a_cancel_request_still_fails(host: Host) -> None:
    inside = trio.Event()
    cancelled = trio.Event()

    async def body(session: Session) -> None:
        with trio.CancelScope(shield=True):
            inside.set()
            await cancelled.wait()
            await session.fail("gave up")
        await trio.sleep_forever()

    async with host.execution(ScriptedProvider(), body) as execution:
        await inside.wait()
        execution.cancel("race")
        cancelled.set()
        result = await execution.result()
    assert result.status is Status.FAILED
    assert isinstance(result.error, agtl.WorkflowFailure)
    assert str(result.error) == "gave up"
    assert result.cancel is None


async def test_cancel_after_outcome_is_frozen_changes_nothing(host: Host) -> None:
    async def body(session: Session) -> int:
        return 42

    execution = host.execution(ScriptedProvider(), body)
    result = await execution.result()
    execution.cancel("late")
    execution.cancel("later")
    assert execution.outcome is result
    assert await execution.result() is result
    assert result.status is Status.SUCCEEDED
    assert result.cancel is None


async def test_exception_fails_and_single_exception_groups_are_unwrapped(host: Host) -> None:
    async def body(session: Session) -> None:
        async with trio.open_nursery() as nursery:

            async def boom() -> None:
                raise KeyError("missing")

            nursery.start_soon(boom)

    result = await host.execution(ScriptedProvider(), body).result()
    assert result.status is Status.FAILED
    assert isinstance(result.error, KeyError)
    with pytest.raises(agtl.ExecutionFailed) as info:
        result.unwrap()
    assert info.value.__cause__ is result.error


async def test_enclosing_scope_cancel_finalizes_and_propagates(
    host: Host, autojump_clock: Any
) -> None:
    ran_hooks: list[agtl.Result[Any]] = []

    async def body(session: Session) -> str:
        session.on_done(ran_hooks.append)
        return (await session.generate_text(prompt="x")).text

    execution = host.execution(ScriptedProvider(SLOW), body)
    with trio.move_on_after(2.5) as outer:
        await execution.result()
        pytest.fail("result() must not return when the caller's scope is cancelled")
    assert outer.cancelled_caught
    outcome = execution.outcome
    assert outcome is not None
    assert outcome.status is Status.CANCELED
    assert outcome.cancel is not None
    assert outcome.cancel.source is CancelSource.ENCLOSING_SCOPE
    assert outcome.partial is not None
    assert outcome.partial.text == "one two "
    assert ran_hooks == [outcome]


async def test_enclosing_scope_cancel_in_background_mode(host: Host, autojump_clock: Any) -> None:
    async def body(session: Session) -> str:
        return (await session.generate_text(prompt="x")).text

    with trio.move_on_after(1.5) as outer:
        async with host.execution(ScriptedProvider(SLOW), body) as execution:
            await trio.sleep_forever()
    assert outer.cancelled_caught
    assert execution.outcome is not None
    assert execution.outcome.cancel is not None
    assert execution.outcome.cancel.source is CancelSource.ENCLOSING_SCOPE


async def test_workflow_swallowing_cancelled_is_still_canceled(
    host: Host, autojump_clock: Any
) -> None:
    async def body(session: Session) -> str:
        try:
            await trio.sleep(10)
        except trio.Cancelled:
            return "pretend nothing happened"
        return "finished"

    async with host.execution(ScriptedProvider(), body) as execution:
        await trio.sleep(1)
        execution.cancel("stop")
        result = await execution.result()
    assert result.status is Status.CANCELED
    assert result.value is None
    assert result.cancel is not None
    assert result.cancel.reason == "stop"


async def test_keyboard_interrupt_finalizes_as_failed_and_propagates(host: Host) -> None:
    hooks: list[Status] = []

    async def body(session: Session) -> None:
        session.on_done(lambda r: hooks.append(r.status))
        raise KeyboardInterrupt

    execution = host.execution(ScriptedProvider(), body)
    with pytest.raises(KeyboardInterrupt):
        await execution.result()
    assert execution.outcome is not None
    assert execution.outcome.status is Status.FAILED
    assert isinstance(execution.outcome.error, KeyboardInterrupt)
    assert hooks == [Status.FAILED]


async def test_leaving_async_with_early_cancels_and_waits(host: Host, autojump_clock: Any) -> None:
    provider = ScriptedProvider(SLOW)

    async def body(session: Session) -> str:
        return (await session.generate_text(prompt="x")).text

    async with host.execution(provider, body) as execution:
        await trio.sleep(1.5)
    outcome = execution.outcome
    assert outcome is not None
    assert outcome.status is Status.CANCELED
    assert outcome.cancel is not None
    assert outcome.cancel.source is CancelSource.HANDLE
    assert "left the `async with` block" in (outcome.cancel.reason or "")


async def test_exception_in_async_with_body_cancels_and_propagates(
    host: Host, autojump_clock: Any
) -> None:
    async def body(session: Session) -> str:
        return (await session.generate_text(prompt="x")).text

    with pytest.raises(RuntimeError, match="ui crashed"):
        async with host.execution(ScriptedProvider(SLOW), body) as execution:
            await trio.sleep(1.5)
            raise RuntimeError("ui crashed")
    assert execution.outcome is not None
    assert execution.outcome.status is Status.CANCELED
    assert "RuntimeError" in (execution.outcome.cancel.reason or "")  # type: ignore[union-attr]


async def test_an_execution_runs_once(host: Host) -> None:
    async def body(session: Session) -> int:
        return 1

    execution = host.execution(ScriptedProvider(), body)
    await execution.result()
    with pytest.raises(agtl.ExecutionClosedError, match="runs once"):
        async with execution:
            pass


async def test_result_waiters_in_other_tasks_get_the_same_result(
    host: Host, autojump_clock: Any
) -> None:
    async def body(session: Session) -> str:
        return (await session.generate_text(prompt="x")).text

    results: list[agtl.Result[Any]] = []
    execution = host.execution(ScriptedProvider(Reply("a b", delay=1)), body)

    async def wait() -> None:
        results.append(await execution.result())

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(wait)
    assert len(results) == 3
    assert results[0] is results[1] is results[2]
    assert results[0].value == "a b"


async def test_no_llm_call_after_terminal_event(host: Host, autojump_clock: Any) -> None:
    provider = ScriptedProvider(Reply("first"), Reply("second"))
    attempts: list[str] = []

    async def body(session: Session) -> str:
        first = await session.generate_text(prompt="1")
        await session.done(first.text)
        attempts.append("calling again")
        with trio.CancelScope(shield=True):
            # Even shielded code cannot start a call: it is refused with a clear error.
            try:
                await session.generate_text(prompt="2")
            except agtl.ExecutionClosedError:
                attempts.append("refused while shielded")
        try:
            await session.generate_text(prompt="3")
        except trio.Cancelled:
            # Outside a shield the execution's scope is cancelled: the call never starts.
            attempts.append("cancelled")
            raise
        return "never"

    result = await host.execution(provider, body).result()
    assert result.status is Status.SUCCEEDED
    assert result.value == "first"
    assert attempts == ["calling again", "refused while shielded", "cancelled"]
    assert len(provider.calls) == 1
    assert result.summary.llm_call_count == 1


async def test_terminal_event_methods_refuse_after_terminal(host: Host) -> None:
    checked: list[str] = []

    async def body(session: Session) -> str:
        await session.done("v")
        with trio.CancelScope(shield=True):
            with pytest.raises(agtl.ExecutionClosedError, match="terminal 'complete' event"):
                session.emit("progress")
            with pytest.raises(agtl.ExecutionClosedError, match="terminal 'complete' event"):
                await session.done("again")
            with pytest.raises(agtl.ExecutionClosedError, match="terminal 'complete' event"):
                await session.fail("x")
            checked.append("all refused")
        return "ignored"

    result = await host.execution(ScriptedProvider(), body).result()
    assert result.value == "v"
    assert checked == ["all refused"]


async def test_emit_refuses_reserved_types(host: Host) -> None:
    async def body(session: Session) -> str:
        for reserved in ("complete", "error"):
            with pytest.raises(agtl.InvalidArgumentError, match="reserved"):
                session.emit(reserved)
        return "ok"

    assert (await host.execution(ScriptedProvider(), body).result()).value == "ok"


class TestHooks:
    async def test_run_lifo_exactly_once_on_every_path(
        self, host: Host, autojump_clock: Any
    ) -> None:
        for outcome in ("succeed", "fail", "cancel"):
            order: list[str] = []

            async def body(
                session: Session, outcome: str = outcome, order: list[str] = order
            ) -> str:
                session.on_done(lambda r: order.append(f"first:{r.status}"))

                async def second(r: agtl.Result[Any]) -> None:
                    await trio.sleep(0.1)
                    order.append(f"second:{r.status}")

                session.on_done(second)
                session.on_done(lambda r: order.append(f"third:{r.status}"))
                if outcome == "fail":
                    raise ValueError("x")
                if outcome == "cancel":
                    await trio.sleep(10)
                return "ok"

            async with host.execution(ScriptedProvider(), body, timeout=1) as execution:
                result = await execution.result()
            status = result.status.value
            assert order == [f"third:{status}", f"second:{status}", f"first:{status}"], outcome

    async def test_failing_hook_does_not_stop_the_others(self, host: Host) -> None:
        from structlog.testing import capture_logs

        ran: list[str] = []

        async def body(session: Session) -> str:
            session.on_done(lambda r: ran.append("first"))

            def broken(r: agtl.Result[Any]) -> None:
                raise RuntimeError("hook broke")

            session.on_done(broken)
            return "ok"

        with capture_logs() as logs:
            result = await host.execution(ScriptedProvider(), body).result()
        assert result.status is Status.SUCCEEDED
        assert ran == ["first"]
        failures = [e for e in logs if e["event"] == "execution.hook_failed"]
        assert len(failures) == 1
        assert failures[0]["message"] == "hook broke"

    async def test_hooks_are_shielded_with_a_bounded_grace(
        self, host: Host, autojump_clock: Any
    ) -> None:
        ran: list[str] = []

        async def body(session: Session) -> str:
            session.on_done(lambda r: ran.append("after the stuck one"))

            async def stuck(r: agtl.Result[Any]) -> None:
                await trio.sleep_forever()

            async def slow_cleanup(r: agtl.Result[Any]) -> None:
                await trio.sleep(1)  # would raise Cancelled if not shielded
                ran.append("slow cleanup")

            session.on_done(stuck)
            session.on_done(slow_cleanup)
            await trio.sleep(10)
            return "never"

        with trio.move_on_after(1):
            await host.execution(ScriptedProvider(), body).result()
        assert ran == ["slow cleanup", "after the stuck one"]
        assert trio.current_time() == pytest.approx(1 + 1 + agtl.execution.HOOK_GRACE_SECONDS)

    async def test_on_done_after_the_end_is_refused(self, host: Host) -> None:
        sessions: list[Session] = []

        async def body(session: Session) -> None:
            sessions.append(session)

        await host.execution(ScriptedProvider(), body).result()
        with pytest.raises(agtl.ExecutionClosedError):
            sessions[0].on_done(lambda r: None)


class TestLimits:
    async def test_max_requests_cancels_before_the_call_is_sent(self, host: Host) -> None:
        provider = ScriptedProvider("a", "b", "c")

        async def body(session: Session) -> None:
            for _ in range(3):
                await session.generate_text(prompt="x")

        result = await host.execution(provider, body, limits=UsageLimits(max_requests=2)).result()
        assert result.status is Status.CANCELED
        assert result.cancel is not None
        assert result.cancel.source is CancelSource.LIMIT
        assert result.cancel.reason == "max_requests=2 reached"
        assert len(provider.calls) == 2
        assert result.summary.llm_call_count == 2

    async def test_token_budget_stops_the_call_where_it_is_crossed(self, host: Host) -> None:
        provider = ScriptedProvider(Reply(["w "] * 50), "never sent")

        async def body(session: Session) -> None:
            await session.generate_text(prompt="x")
            await session.generate_text(prompt="y")

        limits = UsageLimits(max_output_tokens=3)
        result = await host.execution(provider, body, limits=limits).result()
        assert result.status is Status.CANCELED
        assert result.cancel is not None
        assert result.cancel.source is CancelSource.LIMIT
        assert (
            result.cancel.reason == "max_output_tokens=3 exceeded (used 4) while call #0 streamed"
        )
        assert len(provider.calls) == 1
        [call] = result.summary.llm_calls
        assert call.stop_reason is StopReason.CANCELLED
        assert call.usage.output_tokens == 4  # stopped at the piece that crossed, not at 50
        assert result.partial is not None
        assert result.partial.text == "w " * 4  # what was paid for is kept

    async def test_a_budget_crossed_by_a_finished_call_keeps_its_text(self, host: Host) -> None:
        provider = _UsageAtTheEnd("the whole answer", output_tokens=40)

        async def body(session: Session) -> None:
            await session.generate_text(prompt="x")
            await session.generate_text(prompt="y")

        result = await host.execution(
            provider, body, limits=UsageLimits(max_output_tokens=30)
        ).result()
        assert result.status is Status.CANCELED
        assert result.cancel is not None
        assert result.cancel.reason == "max_output_tokens=30 exceeded (used 40)"
        assert result.summary.llm_calls[0].stop_reason is StopReason.EOS
        assert result.partial is not None
        assert result.partial.text == "the whole answer"
        assert result.partial.call_indexes == (0,)

    @pytest.mark.parametrize(
        ("limits", "reason", "partial"),
        [
            # 5 input tokens > 3: cut at the first piece (the figure comes with it).
            (
                UsageLimits(max_input_tokens=3),
                "max_input_tokens=3 exceeded (used 5) while call #0 streamed",
                "w ",
            ),
            # 5 input + 2 output = 7 > 6: cut at the second piece, not at the first (6 is
            # allowed).
            (
                UsageLimits(max_total_tokens=6),
                "max_total_tokens=6 exceeded (used 7) while call #0 streamed",
                "w w ",
            ),
        ],
        ids=["input", "total"],
    )
    async def test_input_and_total_token_budgets_stop_the_call_where_crossed(
        self, host: Host, limits: UsageLimits, reason: str, partial: str
    ) -> None:
        provider = ScriptedProvider(Reply(["w "] * 20), "never sent")

        async def body(session: Session) -> None:
            await session.generate_text(prompt="one two three four five")
            await session.generate_text(prompt="y")

        result = await host.execution(provider, body, limits=limits).result()
        assert result.status is Status.CANCELED
        assert result.cancel is not None
        assert result.cancel.source is CancelSource.LIMIT
        assert result.cancel.reason == reason
        assert len(provider.calls) == 1
        [call] = result.summary.llm_calls
        assert call.usage.input_tokens == 5
        assert call.stop_reason is StopReason.CANCELLED
        assert result.partial is not None
        assert result.partial.text == partial

    async def test_cost_budget(self, host: Host) -> None:
        price = agtl.Price(input="1000000", output="1000000")  # $1 per token
        provider = ScriptedProvider("a b c d e f", "g").with_pricing({"scripted-model": price})

        async def body(session: Session) -> None:
            await session.generate_text(prompt="x")
            await session.generate_text(prompt="y")

        result = await host.execution(provider, body, limits=UsageLimits(max_cost="3.5")).result()
        assert result.status is Status.CANCELED
        assert result.cancel is not None
        assert result.cancel.source is CancelSource.LIMIT
        assert (result.cancel.reason or "").startswith("max_cost=3.5 exceeded (used 4)")
        assert result.summary.cost == 4  # one input token and three output tokens: cut there
        assert result.partial is not None
        assert result.partial.text == "a b c "


class _UsageAtTheEnd(agtl.Provider):
    """A backend that, like many servers, reports usage only once the reply is complete."""

    def __init__(self, text: str, *, output_tokens: int) -> None:
        super().__init__()
        self.text = text
        self.output_tokens = output_tokens

    def _builtin_model(self) -> str:
        return "end-usage"

    async def start_generation(self, request: agtl.GenerationRequest) -> agtl.GenerationStream:
        return _EndUsageStream(self.text, self.output_tokens)


class _EndUsageStream(agtl.GenerationStream):
    def __init__(self, text: str, output_tokens: int) -> None:
        self.text: str | None = text
        self.output_tokens = output_tokens
        self.done = False

    async def next_delta(self) -> str | None:
        await trio.lowlevel.checkpoint()
        text, self.text = self.text, None
        if text is None:
            self.done = True
        return text

    def report(self) -> agtl.CallReport:
        if not self.done:  # nothing known while it streams: 16 chars estimate to 4 tokens
            return agtl.CallReport(agtl.Usage(provenance=agtl.Provenance.UNKNOWN))
        usage = agtl.Usage(1, self.output_tokens, provenance=agtl.Provenance.PROVIDER)
        return agtl.CallReport(usage, StopReason.EOS)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class TestCallTimeouts:
    async def test_first_token_timeout_can_be_caught_and_retried(
        self, host: Host, autojump_clock: Any
    ) -> None:
        provider = ScriptedProvider(Reply("late", first_delay=10), Reply("quick answer"))

        async def body(session: Session) -> str:
            try:
                return (await session.generate_text(prompt="x", first_token_timeout=2)).text
            except agtl.FirstTokenTimeoutError as exc:
                assert exc.is_retryable
                return (await session.generate_text(prompt="x", first_token_timeout=2)).text

        result = await host.execution(provider, body).result()
        assert result.status is Status.SUCCEEDED
        assert result.value == "quick answer"
        first, second = result.summary.llm_calls
        assert first.stop_reason is StopReason.ERROR
        assert first.error is not None
        assert first.error.type == "FirstTokenTimeoutError"
        assert first.duration == pytest.approx(2)
        assert second.stop_reason is StopReason.EOS

    async def test_stall_timeout_uncaught_fails_with_partial(
        self, host: Host, autojump_clock: Any
    ) -> None:
        provider = ScriptedProvider(Reply("a b c", delay=1, hang=True))

        async def body(session: Session) -> str:
            return (await session.generate_text(prompt="x", stall_timeout=3)).text

        result = await host.execution(provider, body).result()
        assert result.status is Status.FAILED
        assert isinstance(result.error, agtl.StallTimeoutError)
        assert result.partial is not None
        assert result.partial.text == "a b c"
        assert result.summary.llm_calls[0].ended_at == pytest.approx(6)

    async def test_call_timeout_bounds_the_whole_call(
        self, host: Host, autojump_clock: Any
    ) -> None:
        async def body(session: Session) -> str:
            return (await session.generate_text(prompt="x", timeout=2.5, stall_timeout=5)).text

        result = await host.execution(ScriptedProvider(SLOW), body).result()
        assert isinstance(result.error, agtl.CallTimeoutError)
        assert isinstance(result.error, TimeoutError)
        assert result.partial is not None
        assert result.partial.text == "one two "

    async def test_execution_timeout_cancels_instead_of_failing(
        self, host: Host, autojump_clock: Any
    ) -> None:
        async def body(session: Session) -> str:
            return (await session.generate_text(prompt="x", timeout=100)).text

        result = await host.execution(ScriptedProvider(SLOW), body, timeout=2).result()
        assert result.status is Status.CANCELED
        assert result.cancel is not None
        assert result.cancel.source is CancelSource.TIMEOUT


async def test_provider_errors_fail_the_execution_with_the_call_recorded(host: Host) -> None:
    error = agtl.ProviderError(
        "server melted", provider="scripted", status_code=500, retryable=True
    )
    provider = ScriptedProvider(Reply("partial words", error=error))

    async def body(session: Session) -> str:
        return (await session.generate_text(prompt="x")).text

    result = await host.execution(provider, body).result()
    assert result.status is Status.FAILED
    assert result.error is error
    assert result.partial is not None
    assert result.partial.text == "partial words"
    call = result.summary.llm_calls[0]
    assert call.stop_reason is StopReason.ERROR
    assert call.error == agtl.ErrorInfo("ProviderError", "server melted")


async def test_cancel_from_another_thread_like_a_ui_callback(host: Host) -> None:
    provider = ScriptedProvider(Reply("tick " * 1000, delay=0.01))
    first_delta = trio.Event()

    async def body(session: Session) -> str:
        async with session.stream_text(prompt="x") as stream:
            async for _ in stream:
                first_delta.set()
        return stream.text

    async with host.execution(provider, body) as execution:
        await first_delta.wait()
        await trio.to_thread.run_sync(execution.cancel, "clicked stop")
        result = await execution.result()
    assert result.status is Status.CANCELED
    assert result.cancel is not None
    assert result.cancel.reason == "clicked stop"
    assert result.cancel.source is CancelSource.HANDLE
    assert result.partial is not None
    assert result.partial.text.startswith("tick ")


async def test_signal_fired_from_another_thread(host: Host) -> None:
    signal = CancelSignal()
    started = trio.Event()

    async def body(session: Session) -> None:
        started.set()
        await trio.sleep_forever()

    async with host.execution(ScriptedProvider(), body, signal=signal) as execution:
        await started.wait()
        await trio.to_thread.run_sync(signal.cancel, "from a thread")
        result = await execution.result()
    assert result.cancel is not None
    assert (result.cancel.source, result.cancel.reason) == (CancelSource.SIGNAL, "from a thread")
