"""Shared pieces of the benchmarks: the figure type, ABBA timing, percentiles, cancel checks."""

from __future__ import annotations

import gc
import math
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Literal, TypeVar

import attrs
import trio

import agtl
from agtl import Session

Batch = Callable[[int], Awaitable[None]]
X = TypeVar("X")

#: Where a baseline comes from: measured in the same run, or a fixed budget.
BaselineKind = Literal["measured", "constant"]


@attrs.frozen
class Comparison:
    """One figure: the candidate against its baseline, with the target it must meet.

    ``detail`` carries what the table's notes column and the charts need: for latency
    figures the raw samples (``samples_ms``) with their p50 and p99, and how many of the
    attempted samples were valid (``valid``/``attempted``). ``baseline_kind`` says whether the
    baseline was measured in the same run or is a fixed budget (a constant).
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
    baseline_kind: BaselineKind = "measured"

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
        "p50_ms": statistics.median(samples) if samples else math.nan,
        "p99_ms": percentile(samples, 0.99) if samples else math.nan,
        "samples_ms": samples,
        **extra,
    }


@attrs.define
class CancelSamples:
    """Cancel latencies, kept only when the cancel landed where the benchmark claims.

    A sample whose result shows the cancel missed its phase (the reply had already finished,
    the first token had already come) is counted as invalid with its reason, never dropped
    silently; a figure with any invalid sample does not pass.
    """

    valid: list[float] = attrs.Factory(list)
    invalid: list[str] = attrs.Factory(list)

    def add(self, seconds: float, problem: str | None) -> None:
        if problem is None:
            self.valid.append(seconds)
        else:
            self.invalid.append(problem)

    @property
    def attempted(self) -> int:
        return len(self.valid) + len(self.invalid)

    def figure(
        self,
        *,
        key: str,
        name: str,
        budget_ms: float,
        baseline_kind: BaselineKind,
        **extra: Any,
    ) -> Comparison:
        """The p99 of the valid samples against ``budget_ms``."""
        p99_ms = percentile(self.valid, 0.99) * 1000 if self.valid else math.inf
        return Comparison(
            key=key,
            name=name,
            unit="ms",
            candidate=p99_ms,
            baseline=budget_ms,
            ratio=p99_ms / budget_ms,
            target="<= 1.0x",
            passed=not self.invalid and p99_ms <= budget_ms,
            detail=latency_detail(
                self.valid,
                valid=len(self.valid),
                attempted=self.attempted,
                invalid_reasons=sorted(set(self.invalid)),
                **extra,
            ),
            baseline_kind=baseline_kind,
        )


def mid_stream_problem(result: agtl.Result[Any], *, delivered: int, after: int) -> str | None:
    """Why ``result`` is not a cancel of its one call mid-stream (None: it is).

    ``delivered`` is how many deltas the consumer had seen when the cancel was fired: a
    figure of the harness, not the call's usage (which a remote server may only estimate).
    """
    if result.status is not agtl.Status.CANCELED:
        return f"status {result.status.value}, not canceled"
    calls = result.summary.llm_calls
    if len(calls) != 1 or calls[0].stop_reason is not agtl.StopReason.CANCELLED:
        return "the call was not the one cancelled"
    if delivered < after or result.partial is None or not result.partial.text:
        return "cancelled before the stream had started"
    return None


def abba(rounds: int, a: X, b: X) -> Iterator[X]:
    """``a b b a a b ...``: alternate which side goes first, so a drift favours neither.

    Collects garbage before each item, so neither side pays for the other's garbage.
    """
    for round_ in range(rounds):
        for item in (a, b) if round_ % 2 == 0 else (b, a):
            gc.collect()
            yield item


async def interleaved(
    candidate: Batch, baseline: Batch, *, iterations: int, rounds: int
) -> tuple[float, float]:
    """Median seconds per iteration of each, measured in ABBA-ordered batches."""
    per: dict[int, list[float]] = {0: [], 1: []}
    await candidate(max(1, iterations // 10))  # warm up both paths
    await baseline(max(1, iterations // 10))
    for side in abba(rounds, 0, 1):
        batch = candidate if side == 0 else baseline
        start = time.perf_counter()
        await batch(iterations)
        per[side].append((time.perf_counter() - start) / iterations)
    return statistics.median(per[0]), statistics.median(per[1])


def ratio_interval(
    candidate: Sequence[float], baseline: Sequence[float], *, resamples: int = 2000
) -> tuple[float, float]:
    """A 95% bootstrap interval of the median ratio candidate/baseline over paired rounds.

    ``candidate[i]`` and ``baseline[i]`` were measured back to back (one ABBA round), so
    their ratio cancels most of the machine's drift; the interval says how far the median of
    those ratios could move by chance.
    """
    rng = random.Random(0)
    ratios = [c / b for c, b in zip(candidate, baseline, strict=True)]
    medians = [statistics.median(rng.choice(ratios) for _ in ratios) for _ in range(resamples)]
    return percentile(medians, 0.025), percentile(medians, 0.975)


async def cancel_mid_stream(
    provider: agtl.Provider, *, after: int, **call: Any
) -> tuple[float, agtl.Result[Any], str | None]:
    """Stream one call, cancel once ``after`` deltas arrived.

    Returns the seconds from cancel() to result(), the result, and why the sample is not a
    cancel mid-stream (``None`` when it is).
    """
    got = trio.Event()
    count = 0

    async def run(session: Session) -> None:
        nonlocal count
        async with session.stream_text(**call) as stream:
            async for _ in stream:
                count += 1
                if count == after:
                    got.set()

    async with provider.simple_execution(run) as execution:
        await got.wait()
        delivered = count
        started = time.perf_counter()
        execution.cancel()
        result = await execution.result()
        latency = time.perf_counter() - started
    return latency, result, mid_stream_problem(result, delivered=delivered, after=after)
