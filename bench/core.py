"""Core runtime benchmarks on the scripted provider.

* overhead: ``simple_execution`` with one trivial scripted call vs a raw trio nursery + cancel
  scope + task doing the same two checkpoints (target ratio <= 1.4);
* streaming: events/s through ``streaming_execution`` to one consumer vs a raw trio memory
  channel between two tasks doing the same work (unbounded vs a producer that does not yield
  per item; ``buffer_size=1`` vs a rendezvous channel; target >= 0.5 of raw);
* cancel latency on a scripted stream: cancel() to result() returning, mid-stream (target:
  p99 <= 1 ms, since nothing but agtl itself stands between the two).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import trio

from agtl import Event, Session
from agtl.testing import Reply, ScriptedProvider
from bench._harness import (
    CancelSamples,
    Comparison,
    cancel_mid_stream,
    interleaved,
)


async def overhead(*, quick: bool) -> Comparison:
    reply = Reply("ok")
    provider = ScriptedProvider(respond=lambda request: reply)

    async def workflow(session: Session) -> str:
        return (await session.generate_text(prompt="ping")).text

    async def with_agtl(n: int) -> None:
        for _ in range(n):
            result = await provider.simple_execution(workflow).result()
            assert result.value == "ok"

    async def fake_call() -> str:
        # The same awaits the scripted call makes: start, the one chunk, the end of stream.
        await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()
        return "ok"

    async def task(box: list[str]) -> None:
        box.append(await fake_call())

    async def raw(n: int) -> None:
        for _ in range(n):
            box: list[str] = []
            with trio.CancelScope():
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(task, box)
            assert box == ["ok"]

    iterations, rounds = (300, 5) if quick else (3000, 9)
    candidate, baseline = await interleaved(with_agtl, raw, iterations=iterations, rounds=rounds)
    ratio = candidate / baseline
    return Comparison(
        key="overhead",
        name="execution overhead (simple_execution + 1 scripted call vs raw trio)",
        unit="us/execution",
        candidate=candidate * 1e6,
        baseline=baseline * 1e6,
        ratio=ratio,
        target="<= 1.4x",
        passed=ratio <= 1.4,
    )


async def streaming(*, quick: bool, bounded: bool = False) -> Comparison:
    """Events/s from a streaming execution to one consumer, against the same work in raw trio.

    Unbounded: the agtl generator yields events without a scheduler round trip each (the
    driver appends to the log), so the raw producer does the same (``send_nowait`` into an
    unbounded channel). Bounded: ``buffer_size=1`` pauses the generator whenever the consumer
    lags, so the raw side is a rendezvous (buffer 0) channel, where every item goes through
    the scheduler too. On the consuming side, agtl's stream goes through the scheduler once
    every 64 events it reads back to back; the raw consumer drains its channel the same way
    (``receive_nowait`` while items are there, a checkpoint every 64), and both sides carry
    the same number of items (the raw producer sends one more, for agtl's ``complete``).
    """
    events = 2_000 if quick else 20_000

    async def gen(session: Session) -> AsyncIterator[Event]:
        for i in range(events):
            yield session.emit("tick", i)
        yield await session.done(events)

    provider = ScriptedProvider()

    async def with_agtl(n: int) -> None:
        for _ in range(n):
            execution = provider.streaming_execution(gen, buffer_size=1 if bounded else None)
            async with execution:
                count = 0
                async for _event in execution.stream():
                    count += 1
            assert count == events + 1

    async def producer(send: trio.MemorySendChannel[int]) -> None:
        async with send:
            for i in range(events + 1):
                if bounded:
                    await send.send(i)
                else:
                    send.send_nowait(i)

    async def drain(receive: trio.MemoryReceiveChannel[int]) -> int:
        """Read every item, through the scheduler once per 64 read back to back."""
        count = back_to_back = 0
        while True:
            try:
                receive.receive_nowait()
            except trio.WouldBlock:
                try:
                    await receive.receive()
                except trio.EndOfChannel:
                    return count
                back_to_back = 0
            except trio.EndOfChannel:
                return count
            count += 1
            back_to_back += 1
            if back_to_back == 64:
                await trio.lowlevel.checkpoint()
                back_to_back = 0

    async def raw(n: int) -> None:
        for _ in range(n):
            send, receive = trio.open_memory_channel[int](0 if bounded else math.inf)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(producer, send)
                async with receive:
                    count = await drain(receive)
            assert count == events + 1

    candidate, baseline = await interleaved(with_agtl, raw, iterations=1, rounds=6 if quick else 10)
    agtl_rate = (events + 1) / candidate
    raw_rate = (events + 1) / baseline
    ratio = agtl_rate / raw_rate
    if bounded:
        label = "buffer_size=1 vs raw rendezvous channel (buffer 0)"
    else:
        label = "unbounded vs raw unbounded channel, producer not yielding per item"
    return Comparison(
        key="streaming-bounded" if bounded else "streaming",
        name=f"streaming events/s ({label}), agtl rate / raw rate",
        unit="events/s",
        candidate=agtl_rate,
        baseline=raw_rate,
        ratio=ratio,
        target=">= 0.5x",
        passed=ratio >= 0.5,
        detail={"events_per_run": events},
    )


SCRIPTED_CANCEL_BUDGET_MS = 1.0


async def cancel_latency(*, quick: bool) -> Comparison:
    # A reply that would take ~2 s, one word per millisecond; cancelled after a few words.
    provider = ScriptedProvider(respond=lambda request: Reply("word " * 2000, delay=0.001))
    samples = CancelSamples()
    for _ in range(20 if quick else 300):
        latency, _, problem = await cancel_mid_stream(provider, after=5, prompt="go")
        samples.add(latency, problem)
    return samples.figure(
        key="scripted-cancel",
        name="scripted cancel latency mid-stream (p99, budget a constant 1 ms)",
        budget_ms=SCRIPTED_CANCEL_BUDGET_MS,
        baseline_kind="constant",
    )
