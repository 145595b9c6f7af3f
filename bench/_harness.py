"""Interleaved measurement: alternate batches of a candidate and its baseline."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

Batch = Callable[[int], Awaitable[None]]


@attrs.frozen
class Comparison:
    """One figure: the candidate against its baseline, with the target it must meet."""

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
