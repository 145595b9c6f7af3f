"""Shared pieces of the benchmarks: the figure type, interleaved timing, percentiles."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import trio

import agtl
from agtl import Session

Batch = Callable[[int], Awaitable[None]]


@attrs.frozen
class Comparison:
    """One figure: the candidate against its baseline, with the target it must meet.

    ``detail`` carries what the table's notes column and the charts need: for latency
    figures the raw samples (``samples_ms``) with their p50 and p99.
    """

    key: str  # the short name ``--only`` takes
    name: str
    unit: str
    candidate: float
    baseline: float
    ratio: float
    target: str
    passed: bool
    detail: dict[str, Any] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 <= q <= 1) of a non-empty sample."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def latency_detail(seconds: Sequence[float], **extra: Any) -> dict[str, Any]:
    """p50, p99 and every sample of a cancel-latency distribution, in milliseconds."""
    samples = [s * 1000 for s in seconds]
    return {
        "p50_ms": statistics.median(samples),
        "p99_ms": percentile(samples, 0.99),
        "samples_ms": samples,
        **extra,
    }


async def interleaved(
    candidate: Batch, baseline: Batch, *, iterations: int, rounds: int
) -> tuple[float, float]:
    """Median seconds per iteration of each, measured in alternating batches."""
    per_candidate: list[float] = []
    per_baseline: list[float] = []
    await candidate(max(1, iterations // 10))  # warm up both paths
    await baseline(max(1, iterations // 10))
    for _ in range(rounds):
        for batch, sink in ((candidate, per_candidate), (baseline, per_baseline)):
            start = time.perf_counter()
            await batch(iterations)
            sink.append((time.perf_counter() - start) / iterations)
    return statistics.median(per_candidate), statistics.median(per_baseline)


async def cancel_mid_stream(
    provider: agtl.Provider, *, after: int, **call: Any
) -> tuple[float, agtl.Result[Any]]:
    """Stream one call, cancel once ``after`` deltas arrived; seconds from cancel() to result()."""
    got = trio.Event()

    async def run(session: Session) -> None:
        async with session.stream_text(**call) as stream:
            count = 0
            async for _ in stream:
                count += 1
                if count == after:
                    got.set()

    async with provider.simple_execution(run) as execution:
        await got.wait()
        started = time.perf_counter()
        execution.cancel()
        result = await execution.result()
        return time.perf_counter() - started, result
