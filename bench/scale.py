"""Many concurrent executions in one process, on the scripted provider.

N streaming executions are started, each with its own consumer task. Every workflow waits
until all N are running (so N really are alive at once), sleeps a short random time, streams
three events and finishes with its own index. Measured per N, in separate runs:

* CPU time per execution (``time.process_time``; the sleeps cost none) and wall time;
* peak traced memory per execution (``tracemalloc``, peak over the run minus what was
  allocated before it, divided by N; target <= 16 KB at N = 10,000);
* that every result is correct: succeeded, the three events in order, the right value.

The same shape in raw trio (a task per item sending four messages into a memory channel read
by a consumer task) is measured alongside as the floor. How the cost per execution grows from
the smallest N to the largest should stay flat. Raw trio's own cost per task grows too (CPython's
cyclic GC walks every live object, and caches miss more), so the figure is agtl's growth
against raw trio's over the same range, at every point of the curve (the figure is the worst
point; target <= 1.25: agtl adds no growth of its own).
"""

from __future__ import annotations

import functools
import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio

from agtl import Event, Session
from agtl.testing import ScriptedProvider
from bench._harness import Comparison, abba

MEMORY_BUDGET_BYTES = 16 * 1024
FLATNESS_TARGET = 1.25
EVENTS = ("a", "b", "c")

Crowd = Callable[[int], Awaitable[None]]


def _agtl_crowd(provider: ScriptedProvider) -> Crowd:
    async def crowd(n: int) -> None:
        all_running = trio.Event()
        running = 0
        delays = [random.random() * 0.05 for _ in range(n)]

        async def workflow(index: int, session: Session) -> AsyncIterator[Event]:
            nonlocal running
            running += 1
            if running == n:
                all_running.set()
            await all_running.wait()
            await trio.sleep(delays[index])
            for name in EVENTS:
                yield session.emit("step", name)
            yield await session.done(index)

        failures: list[str] = []

        async def one(index: int) -> None:
            execution = provider.streaming_execution(functools.partial(workflow, index))
            async with execution:
                seen = [(e.type, e.data) async for e in execution.stream()]
            result = await execution.result()
            expected = [*(("step", name) for name in EVENTS), ("complete", index)]
            if result.status != "succeeded" or result.value != index or seen != expected:
                failures.append(f"#{index}: {result.status} {result.value!r} {seen!r}")

        async with trio.open_nursery() as nursery:
            for index in range(n):
                nursery.start_soon(one, index)
        if failures:
            raise AssertionError(f"{len(failures)} of {n} results wrong, e.g. {failures[0]}")

    return crowd


async def _raw_crowd(n: int) -> None:
    all_running = trio.Event()
    running = 0
    delays = [random.random() * 0.05 for _ in range(n)]

    async def producer(index: int, send: trio.MemorySendChannel[Any]) -> None:
        nonlocal running
        running += 1
        if running == n:
            all_running.set()
        async with send:
            await all_running.wait()
            await trio.sleep(delays[index])
            for name in EVENTS:
                await send.send(name)
            await send.send(index)

    async def one(index: int) -> None:
        send, receive = trio.open_memory_channel[Any](0)
        async with trio.open_nursery() as nursery, receive:
            nursery.start_soon(producer, index, send)
            seen = [item async for item in receive]
        assert seen == [*EVENTS, index]

    async with trio.open_nursery() as nursery:
        for index in range(n):
            nursery.start_soon(one, index)


def _cost(crowd: Crowd, n: int) -> tuple[float, float]:
    """CPU seconds and wall seconds per execution."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    trio.run(crowd, n)
    return (time.process_time() - cpu) / n, (time.perf_counter() - wall) / n


def _memory(crowd: Crowd, n: int) -> float:
    """Peak traced bytes per execution."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        trio.run(crowd, n)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - before) / n


def scale(
    *, quick: bool, largest: int = 10_000, smallest: int = 100, repeats: int = 3
) -> list[Comparison]:
    """The curve from ``smallest`` to ``largest`` concurrent executions (quick: 100, 1,000).

    At 100 executions a run lasts a few milliseconds and its CPU time is noisy; the regression
    check starts its curve at 300 and repeats more, so that its growth figure is stable.
    """
    steps = (100, 300, 1_000, 3_000, 10_000)
    sizes = [100, 1_000] if quick else [n for n in steps if smallest <= n < largest]
    if not quick:
        sizes.append(largest)
        repeats = max(1, repeats)
    else:
        repeats = 1
    agtl_crowd = _agtl_crowd(ScriptedProvider())
    _cost(agtl_crowd, 100)  # warm up
    _cost(_raw_crowd, 100)
    curve: list[dict[str, float]] = []
    for n in sizes:
        cpu: dict[str, list[float]] = {"agtl": [], "raw": []}
        for side in abba(repeats, "agtl", "raw"):  # _cost collects garbage first
            cpu[side].append(_cost(agtl_crowd if side == "agtl" else _raw_crowd, n)[0])
        agtl_cpu, raw_cpu = statistics.median(cpu["agtl"]), statistics.median(cpu["raw"])
        wall = _cost(agtl_crowd, n)[1] * n
        curve.append(
            {
                "n": n,
                "agtl_cpu_us": agtl_cpu * 1e6,
                "raw_cpu_us": raw_cpu * 1e6,
                "wall_s": wall,
                "agtl_peak_bytes": _memory(agtl_crowd, n),
                "raw_peak_bytes": _memory(_raw_crowd, n),
            }
        )
    top, bottom = curve[-1], curve[0]
    # The whole curve is judged, not its end points: at every size, agtl's growth from the
    # smallest against raw trio's; the figure is the worst point.
    for point in curve:
        point["agtl_growth"] = point["agtl_cpu_us"] / bottom["agtl_cpu_us"]
        point["raw_growth"] = point["raw_cpu_us"] / bottom["raw_cpu_us"]
        point["relative_growth"] = point["agtl_growth"] / point["raw_growth"]
    worst = max(curve[1:], key=lambda point: point["relative_growth"])
    agtl_growth, raw_growth = worst["agtl_growth"], worst["raw_growth"]
    relative = worst["relative_growth"]
    return [
        Comparison(
            key="scale-memory",
            baseline_kind="constant",
            name=(
                f"scale: peak memory per execution, {top['n']:,.0f} concurrent "
                "(vs a constant 16 KB)"
            ),
            unit="bytes/execution",
            candidate=top["agtl_peak_bytes"],
            baseline=MEMORY_BUDGET_BYTES,
            ratio=top["agtl_peak_bytes"] / MEMORY_BUDGET_BYTES,
            target="<= 1.0x",
            passed=top["agtl_peak_bytes"] <= MEMORY_BUDGET_BYTES,
            detail={
                "raw_trio_bytes": top["raw_peak_bytes"],
                "wall_s": top["wall_s"],
                "all_correct": True,
            },
        ),
        Comparison(
            key="scale-growth",
            name=(
                f"scale: CPU/execution growth from {bottom['n']:,.0f} concurrent, agtl vs raw "
                f"trio, worst point of the curve to {top['n']:,.0f} (at {worst['n']:,.0f})"
            ),
            unit="x growth",
            candidate=agtl_growth,
            baseline=raw_growth,
            ratio=relative,
            target=f"<= {FLATNESS_TARGET}x",
            passed=relative <= FLATNESS_TARGET,
            detail={"curve": curve},
        ),
    ]
