"""agtl against a peer framework: pydantic-ai with its ``TestModel``, doing the same trivial work.

pydantic-ai runs on asyncio and agtl on trio, so each side runs in its own event loop, in
alternating batches in one process; time is measured inside each batch, so neither side pays
for starting its loop.

* overhead: one execution with one scripted call returning "ok" vs ``Agent.run`` with a
  ``TestModel`` returning "ok" (target: agtl >= 20x faster);
* streaming: text deltas/s from the model to the consumer, through ``streaming_execution``
  (each delta forwarded as an event) vs ``Agent.run_stream(...).stream_text(delta=True)``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import trio
from pydantic_ai import Agent
from pydantic_ai.models.test import TestModel

from agtl import Event, Session
from agtl.testing import Reply, ScriptedProvider
from bench._harness import Comparison, abba

Timed = Callable[[int], Coroutine[Any, Any, float]]


def alternate(agtl_batch: Timed, peer_batch: Timed, *, n: int, rounds: int) -> tuple[float, float]:
    """Median seconds per iteration: agtl batches under trio, peer batches under asyncio."""
    runs: dict[str, list[float]] = {"agtl": [], "peer": []}
    trio.run(agtl_batch, max(1, n // 10))  # warm up both
    asyncio.run(peer_batch(max(1, n // 10)))
    for side in abba(rounds, "agtl", "peer"):
        if side == "agtl":
            runs[side].append(trio.run(agtl_batch, n) / n)
        else:
            runs[side].append(asyncio.run(peer_batch(n)) / n)
    return statistics.median(runs["agtl"]), statistics.median(runs["peer"])


def overhead(*, quick: bool) -> Comparison:
    reply = Reply("ok")
    provider = ScriptedProvider(respond=lambda request: reply)
    agent = Agent(TestModel(custom_output_text="ok"))

    async def workflow(session: Session) -> str:
        return (await session.generate_text(prompt="ping")).text

    async def with_agtl(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            assert (await provider.simple_execution(workflow).result()).value == "ok"
        return time.perf_counter() - start

    async def with_peer(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            assert (await agent.run("ping")).output == "ok"
        return time.perf_counter() - start

    n, rounds = (100, 3) if quick else (1000, 7)
    candidate, baseline = alternate(with_agtl, with_peer, n=n, rounds=rounds)
    speedup = baseline / candidate
    return Comparison(
        key="peer-overhead",
        name="execution overhead vs pydantic-ai Agent.run (TestModel), speedup",
        unit="us/execution",
        candidate=candidate * 1e6,
        baseline=baseline * 1e6,
        ratio=speedup,
        target=">= 20x",
        passed=speedup >= 20,
    )


def streaming(*, quick: bool) -> Comparison:
    words = 500 if quick else 5000
    text = " ".join(f"w{i}" for i in range(words))
    provider = ScriptedProvider(respond=lambda request: Reply(text))
    agent = Agent(TestModel(custom_output_text=text))

    async def forward(session: Session) -> AsyncIterator[Event]:
        async with session.stream_text(prompt="ping") as stream:
            async for delta in stream:
                yield session.emit("text", delta)
        yield await session.done(None)

    async def with_agtl(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            parts: list[str] = []
            async with provider.streaming_execution(forward) as execution:
                async for event in execution.stream():
                    if event.type == "text":
                        parts.append(event.data)
            assert "".join(parts) == text
        return (time.perf_counter() - start) / (n * len(parts))

    async def with_peer(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            parts: list[str] = []
            async with agent.run_stream("ping") as result:
                async for delta in result.stream_text(delta=True, debounce_by=None):
                    parts.append(delta)
            assert "".join(parts) == text
        return (time.perf_counter() - start) / (n * len(parts))

    candidate, baseline = alternate(with_agtl, with_peer, n=1, rounds=3 if quick else 7)
    agtl_rate, peer_rate = 1 / candidate, 1 / baseline
    return Comparison(
        key="peer-streaming",
        name="streaming text deltas/s vs pydantic-ai run_stream (TestModel)",
        unit="deltas/s",
        candidate=agtl_rate,
        baseline=peer_rate,
        ratio=agtl_rate / peer_rate,
        target=">= 1.0x",
        passed=agtl_rate >= peer_rate,
        detail={"deltas_per_run": words},
    )
