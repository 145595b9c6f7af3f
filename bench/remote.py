"""Remote provider benchmarks against a real local OpenAI-compatible server (llama_cpp.server).

* streaming chunks/s through the provider vs raw ``openai.AsyncOpenAI`` streaming the same
  request from the same server, interleaved (target >= 0.95);
* cancel latency mid-stream, cancel() to result() returning (target: p99 <= a constant
  10 ms), each sample checked to be a cancel mid-stream.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import openai

from agtl import Price, Session
from agtl_openai import OpenAIProvider
from agtl_openai.testing import serve_local_model
from bench._harness import (
    CancelSamples,
    Comparison,
    abba,
    cancel_mid_stream,
    ratio_interval,
)

SYSTEM = "You are a helpful assistant."
ESSAY = "Write a long, detailed essay about the history of the sea and ships."


def _provider(base_url: str) -> OpenAIProvider:
    # A local server: free (and no warning about a model missing from the price table).
    return (
        OpenAIProvider(base_url=base_url)
        .with_default_model("smollm2")
        .with_pricing({"smollm2": Price.free()})
    )


async def chunk_rate(base_url: str, *, quick: bool) -> Comparison:
    max_tokens = 48 if quick else 160
    messages: Any = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ESSAY}]
    provider = _provider(base_url)
    raw_client = openai.AsyncOpenAI(api_key="not-needed", base_url=base_url, max_retries=0)

    async def via_agtl() -> float:
        stamps: list[float] = []

        async def run(session: Session) -> None:
            async with session.stream_text(
                messages=messages, max_tokens=max_tokens, temperature=0
            ) as stream:
                async for _ in stream:
                    stamps.append(time.perf_counter())

        (await provider.simple_execution(run).result()).unwrap()
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    async def raw() -> float:
        stamps: list[float] = []
        stream = await raw_client.chat.completions.create(
            model="smollm2", messages=messages, max_tokens=max_tokens, temperature=0, stream=True
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                stamps.append(time.perf_counter())
        await stream.close()
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    rates: dict[str, list[float]] = {"agtl": [], "raw": []}
    try:
        await via_agtl()  # warm up both paths
        await raw()
        for side in abba(2 if quick else 8, "agtl", "raw"):
            rates[side].append(await (via_agtl() if side == "agtl" else raw()))
    finally:
        await provider.aclose()
        await raw_client.close()
    candidate, baseline = statistics.median(rates["agtl"]), statistics.median(rates["raw"])
    low, high = ratio_interval(rates["agtl"], rates["raw"])
    return Comparison(
        key="remote-chunks",
        name="remote chunks/s (provider stream vs raw AsyncOpenAI, same server)",
        unit="chunks/s",
        candidate=candidate,
        baseline=baseline,
        ratio=candidate / baseline,
        target=">= 0.95x",
        passed=candidate / baseline >= 0.95,
        detail={
            "ratio_ci95": [low, high],
            "rounds": len(rates["agtl"]),
            "agtl_rates": rates["agtl"],
            "raw_rates": rates["raw"],
        },
    )


REMOTE_CANCEL_BUDGET_MS = 10.0


async def cancel_latency(base_url: str, *, quick: bool) -> Comparison:
    provider = _provider(base_url)
    samples = CancelSamples()
    try:
        for _ in range(5 if quick else 30):
            latency, _, problem = await cancel_mid_stream(
                provider, after=5, prompt=ESSAY, system=SYSTEM, max_tokens=400
            )
            samples.add(latency, problem)
    finally:
        await provider.aclose()
    return samples.figure(
        key="remote-cancel",
        name="remote cancel latency mid-stream (p99 vs a constant 10 ms)",
        budget_ms=REMOTE_CANCEL_BUDGET_MS,
        baseline_kind="constant",
    )


async def run_all(*, quick: bool, only: set[str] | None = None) -> list[Comparison]:
    benches = {"remote-chunks": chunk_rate, "remote-cancel": cancel_latency}
    wanted = [bench for name, bench in benches.items() if only is None or name in only]
    if not wanted:
        return []
    with serve_local_model() as base_url:
        return [await bench(base_url, quick=quick) for bench in wanted]
