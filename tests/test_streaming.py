"""Streaming executions: events, consumers, replay, backpressure and misbehaving generators."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

import agtl
from agtl import Event, Session, Status
from agtl.testing import Reply, ScriptedProvider


def chunk_events(events: tuple[Event, ...] | list[Event]) -> list[Any]:
    return [e.data for e in events if e.type == "chunk"]


async def test_events_reach_consumers_in_order_with_metrics(autojump_clock: Any) -> None:
    provider = ScriptedProvider(Reply("a b c", delay=1))

    async def gen(session: Session) -> AsyncIterator[Event]:
        yield session.emit("started")
        async with session.stream_text(prompt="x") as stream:
            async for delta in stream:
                yield session.emit("chunk", delta)
        yield await session.done(stream.text)

    wall_before = time.time()
    async with provider.streaming_execution(gen) as execution:
        seen = [event async for event in execution.stream()]
        result = await execution.result()

    assert [e.type for e in seen] == ["started", "chunk", "chunk", "chunk", "complete"]
    assert result.value == "a b c"
    assert result.events == tuple(seen)
    first = seen[0].metrics
    assert first.seq == 0
    assert first.elapsed == 0
    assert first.delta == first.elapsed
    assert wall_before <= first.timestamp <= time.time()
    assert [e.metrics.seq for e in seen] == [0, 1, 2, 3, 4]
    assert [e.metrics.elapsed for e in seen] == pytest.approx([0, 1, 2, 3, 3])
    assert [e.metrics.delta for e in seen] == pytest.approx([0, 1, 1, 1, 0])
    assert seen[-1].is_terminal


async def test_late_and_concurrent_consumers_all_get_every_event(autojump_clock: Any) -> None:
    async def gen(session: Session) -> AsyncIterator[Event]:
        for i in range(5):
            await trio.sleep(1)
            yield session.emit("tick", i)
        yield await session.done("ok")

    collected: dict[str, list[Any]] = {}

    async with agtl.testing.ScriptedProvider().streaming_execution(gen) as execution:

        async def consume(name: str, wait: float) -> None:
            await trio.sleep(wait)
            collected[name] = [(e.type, e.data) async for e in execution.stream()]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consume, "early", 0)
            nursery.start_soon(consume, "mid", 2.5)
            nursery.start_soon(consume, "late", 100)

    expected = [("tick", i) for i in range(5)] + [("complete", "ok")]
    assert collected == {"early": expected, "mid": expected, "late": expected}


@pytest.mark.parametrize("ending", ["cancel", "fail", "crash", "timeout", "no_terminal"])
async def test_every_consumer_ends_however_the_execution_ends(
    ending: str, autojump_clock: Any
) -> None:
    async def gen(session: Session) -> AsyncIterator[Event]:
        yield session.emit("tick")
        await trio.sleep(1)
        if ending == "fail":
            yield await session.fail("nope")
        elif ending == "crash":
            raise OSError("disk gone")
        elif ending == "no_terminal":
            return
        await trio.sleep_forever()

    async with ScriptedProvider().streaming_execution(gen, timeout=5) as execution:
        ended: list[str] = []

        async def consume(name: str) -> None:
            async for _ in execution.stream():
                pass
            ended.append(name)

        async with trio.open_nursery() as nursery:
            for name in ("a", "b"):
                nursery.start_soon(consume, name)
            if ending == "cancel":
                await trio.sleep(2)
                execution.cancel()
    result = execution.outcome
    assert result is not None
    assert sorted(ended) == ["a", "b"]
    expected = {
        "cancel": Status.CANCELED,
        "fail": Status.FAILED,
        "crash": Status.FAILED,
        "timeout": Status.CANCELED,
        "no_terminal": Status.FAILED,
    }[ending]
    assert result.status is expected
    if ending == "no_terminal":
        assert isinstance(result.error, agtl.NoTerminalEventError)
    if ending == "crash":
        assert isinstance(result.error, OSError)


async def test_stream_until_enough_then_cancel(autojump_clock: Any) -> None:
    provider = ScriptedProvider(Reply("word " * 500, delay=0.05))

    async def gen(session: Session) -> AsyncIterator[Event]:
        async with session.stream_text(prompt="Write a very long essay") as stream:
            async for delta in stream:
                yield session.emit("chunk", delta)
        yield await session.done(stream.text)

    collected = ""
    async with provider.streaming_execution(gen) as execution:
        async for event in execution.stream():
            if event.type == "chunk":
                collected += event.data
                if len(collected) >= 100:
                    execution.cancel("enough")
                    break
        result = await execution.result()

    assert result.status is Status.CANCELED
    assert len(collected) == 100
    assert result.partial is not None
    # What the workflow received from the model is at least what the consumer saw.
    assert result.partial.text.startswith(collected)
    assert chunk_events(result.partial.events)[: len(collected) // 5] == ["word "] * 20
    assert result.summary.llm_calls[0].stop_reason is agtl.StopReason.CANCELLED


async def test_partial_text_equals_what_the_workflow_saw() -> None:
    provider = ScriptedProvider(Reply("alpha beta gamma delta", delay=0.01, hang=True))
    seen: list[str] = []
    got_three = trio.Event()

    async def gen(session: Session) -> AsyncIterator[Event]:
        async with session.stream_text(prompt="x") as stream:
            async for delta in stream:
                seen.append(delta)
                yield session.emit("chunk", delta)
                if len(seen) == 4:
                    got_three.set()
        yield await session.done("never")

    async with provider.streaming_execution(gen) as execution:
        await got_three.wait()
        execution.cancel()
        result = await execution.result()
    assert result.partial is not None
    assert result.partial.text == "".join(seen) == "alpha beta gamma delta"
    assert chunk_events(result.events) == seen


async def test_bounded_buffer_pauses_the_generator_for_a_slow_consumer(
    autojump_clock: Any,
) -> None:
    produced: list[int] = []

    async def gen(session: Session) -> AsyncIterator[Event]:
        for i in range(20):
            produced.append(i)
            yield session.emit("n", i)
        yield await session.done(len(produced))

    async with ScriptedProvider().streaming_execution(gen, buffer_size=3) as execution:
        stream = execution.stream()
        await trio.sleep(1)
        assert len(produced) == 4  # 3 buffered for the consumer, the 4th waits at its yield
        first = await stream.__anext__()
        assert first.data == 0
        await trio.sleep(1)
        assert len(produced) == 5
        rest = [e async for e in stream]
        result = await execution.result()
    assert [e.data for e in rest[:-1]] == list(range(1, 20))
    assert result.value == 20


async def test_abandoned_consumer_does_not_block_a_bounded_stream(autojump_clock: Any) -> None:
    async def gen(session: Session) -> AsyncIterator[Event]:
        for i in range(10):
            yield session.emit("n", i)
        yield await session.done("done")

    async with ScriptedProvider().streaming_execution(gen, buffer_size=1) as execution:
        async for _ in execution.stream():
            break  # the iterator is dropped here without aclose()
        explicit = execution.stream()
        await explicit.aclose()
        result = await execution.result()
    assert result.value == "done"


async def test_stream_before_start_is_a_clear_error() -> None:
    async def gen(session: Session) -> AsyncIterator[Event]:
        yield await session.done(1)

    execution = ScriptedProvider().streaming_execution(gen)
    with pytest.raises(agtl.ExecutionClosedError, match="async with"):
        execution.stream()


async def test_await_done_without_yield_and_return() -> None:
    async def gen(session: Session) -> AsyncIterator[Event]:
        yield session.emit("work")
        await session.done("finished")
        return

    result = await ScriptedProvider().streaming_execution(gen).result()
    assert result.status is Status.SUCCEEDED
    assert result.value == "finished"
    assert [e.type for e in result.events] == ["work", "complete"]


async def test_yields_after_done_are_not_delivered() -> None:
    async def gen(session: Session) -> AsyncIterator[Event]:
        yield await session.done("v")
        yield session.emit("after")  # never runs: the generator is closed after the terminal

    async def gen_emitting_after(session: Session) -> AsyncIterator[Event]:
        yield await session.done("v")
        yield Event("late", None, agtl.EventMetrics(0, 0, 0, 99))

    for workflow in (gen, gen_emitting_after):
        result = await ScriptedProvider().streaming_execution(workflow).result()
        assert result.value == "v"
        assert [e.type for e in result.events] == ["complete"]


async def test_yielding_a_non_event_fails_clearly() -> None:
    async def forgot_await(session: Session) -> AsyncIterator[Any]:
        yield session.done("v")  # a coroutine, not an event

    async def yields_str(session: Session) -> AsyncIterator[Any]:
        yield "hello"

    first = await ScriptedProvider().streaming_execution(forgot_await).result()
    assert first.status is Status.FAILED
    assert isinstance(first.error, TypeError)
    assert "forget `await`" in str(first.error)
    second = await ScriptedProvider().streaming_execution(yields_str).result()
    assert isinstance(second.error, TypeError)
    assert "not str" in str(second.error)


async def test_generator_yielding_inside_its_own_nursery(autojump_clock: Any) -> None:
    async def gen(session: Session) -> AsyncIterator[Event]:
        send, receive = trio.open_memory_channel[int](0)
        async with trio.open_nursery() as nursery:

            async def producer() -> None:
                async with send:
                    for i in range(3):
                        await trio.sleep(1)
                        await send.send(i)

            nursery.start_soon(producer)
            async with receive:
                async for value in receive:
                    yield session.emit("value", value)
        yield await session.done("ok")

    async with ScriptedProvider().streaming_execution(gen) as execution:
        values = [e.data async for e in execution.stream() if e.type == "value"]
    assert values == [0, 1, 2]
    assert execution.outcome is not None
    assert execution.outcome.value == "ok"


async def test_cancel_while_generator_yields_inside_its_nursery(autojump_clock: Any) -> None:
    async def gen(session: Session) -> AsyncIterator[Event]:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            while True:
                await trio.sleep(1)
                yield session.emit("tick")

    async with ScriptedProvider().streaming_execution(gen) as execution:
        await trio.sleep(3.5)
        execution.cancel("stop")
        result = await execution.result()
    assert result.status is Status.CANCELED
    assert len(result.events) == 3


async def test_generator_catching_cancelled_and_yielding_is_still_canceled(
    autojump_clock: Any,
) -> None:
    async def gen(session: Session) -> AsyncIterator[Event]:
        try:
            await trio.sleep(10)
        except trio.Cancelled:
            yield session.emit("ignoring the cancel")
            return

    async with ScriptedProvider().streaming_execution(gen) as execution:
        await trio.sleep(1)
        execution.cancel("stop")
        result = await execution.result()
    assert result.status is Status.CANCELED
    assert result.cancel is not None
    assert result.cancel.reason == "stop"


async def test_simple_execution_emit_records_events() -> None:
    async def fn(session: Session) -> int:
        session.emit("step", 1)
        session.emit("step", 2)
        return 3

    result = await ScriptedProvider().simple_execution(fn).result()
    assert [(e.type, e.data) for e in result.events] == [("step", 1), ("step", 2)]
    assert result.value == 3


async def test_replaying_a_long_log_lets_other_tasks_run() -> None:
    async def gen(session: Session) -> AsyncIterator[Event]:
        for i in range(1000):
            yield session.emit("n", i)
        yield await session.done("ok")

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    execution = ScriptedProvider().streaming_execution(gen)
    async with execution:
        result = await execution.result()  # finished: the stream below is a pure replay
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await trio.lowlevel.checkpoint()
            before = ticks
            replayed = [event async for event in execution.stream()]
            nursery.cancel_scope.cancel()
    assert replayed == list(result.events)
    assert len(replayed) == 1001
    # 1001 events replay with 15 schedule points; without them the ticker would not run at all.
    assert ticks - before >= 10
