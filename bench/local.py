"""Local model benchmarks (the bundled SmolLM2 through agtl-llamacpp).

* decode tokens/s through the provider's stream vs raw llama-cpp-python streaming the same
  chat with the same settings, interleaved (target >= 0.97);
* cancel latency, cancel() to result() returning: during decode (target p99 <= one decode
  step + 5 ms) and during the prefill of a ~1,800-token prompt (target p99 <= 20 ms);
* time to first token with a ~1,500-token history: warm (prefix in the KV cache) vs cold,
  and warm right after a cancelled turn (target >= 10x).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

import trio

from agtl import Session, TextResult
from agtl_llamacpp import LlamaCppProvider
from bench._harness import Comparison, cancel_mid_stream, latency_detail, percentile

SYSTEM = "You are a helpful assistant."
ESSAY = "Write a long, detailed essay about the history of the sea and ships."
FACTS = "Rivers carry water from the mountains down to the sea, shaping valleys. "


async def decode_rate(provider: LlamaCppProvider, *, quick: bool) -> Comparison:
    llama = provider._engine.llama
    max_tokens = 48 if quick else 160
    messages: Any = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ESSAY}]

    async def via_agtl() -> tuple[int, float]:
        stamps: list[float] = []

        async def run(session: Session) -> None:
            async with session.stream_text(messages=messages, max_tokens=max_tokens) as stream:
                async for _ in stream:
                    stamps.append(time.perf_counter())

        result = await provider.simple_execution(run).result()
        tokens = result.summary.llm_calls[0].usage.output_tokens or 0
        return tokens, stamps[-1] - stamps[0]

    def raw() -> tuple[int, float]:
        stamps: list[float] = []
        chunks: Any = llama.create_chat_completion(
            messages=messages, max_tokens=max_tokens, temperature=0, stream=True
        )
        for chunk in chunks:
            if chunk["choices"][0]["delta"].get("content"):
                stamps.append(time.perf_counter())
        return len(stamps), stamps[-1] - stamps[0]

    async def via_raw() -> tuple[int, float]:
        async with provider._engine.turn:  # the raw baseline uses the same context
            return await trio.to_thread.run_sync(raw)

    agtl_rates: list[float] = []
    raw_rates: list[float] = []
    await via_agtl()  # warm up both paths (page in the weights, allocate buffers)
    await via_raw()
    for round_ in range(2 if quick else 6):
        # ABBA order, so that a drift in machine speed favours neither side.
        pair = ((via_agtl, agtl_rates), (via_raw, raw_rates))
        for measure, rates in pair if round_ % 2 == 0 else reversed(pair):
            tokens, seconds = await measure()
            rates.append((tokens - 1) / seconds)
    candidate, baseline = statistics.median(agtl_rates), statistics.median(raw_rates)
    return Comparison(
        key="local-decode",
        name="local decode tokens/s (provider stream vs raw llama-cpp-python)",
        unit="tokens/s",
        candidate=candidate,
        baseline=baseline,
        ratio=candidate / baseline,
        target=">= 0.97x",
        passed=candidate / baseline >= 0.97,
    )


async def cancel_during_decode(provider: LlamaCppProvider, *, quick: bool) -> Comparison:
    latencies: list[float] = []
    steps: list[float] = []
    for _ in range(5 if quick else 30):
        latency, result = await cancel_mid_stream(
            provider, after=8, prompt=ESSAY, system=SYSTEM, max_tokens=400
        )
        latencies.append(latency)
        call = result.summary.llm_calls[0]
        if call.output_tokens_per_second:
            steps.append(1 / call.output_tokens_per_second)
    step = statistics.median(steps)
    p99 = percentile(latencies, 0.99)
    budget = step + 0.005
    return Comparison(
        key="local-cancel-decode",
        name="local cancel latency during decode (p99 vs one decode step + 5 ms)",
        unit="ms",
        candidate=p99 * 1000,
        baseline=budget * 1000,
        ratio=p99 / budget,
        target="<= 1.0x",
        passed=p99 <= budget,
        detail=latency_detail(latencies, decode_step_ms=step * 1000),
    )


async def cancel_during_prefill(provider: LlamaCppProvider, *, quick: bool) -> Comparison:
    latencies: list[float] = []
    prompt_tokens = 0
    for trial in range(3 if quick else 15):
        entered = trio.Event()
        # A different first line each time, so no trial reuses another's prefill.
        prompt = f"Trial {trial}-{time.time_ns()}.\n" + FACTS * 125

        async def run(
            session: Session, entered: trio.Event = entered, prompt: str = prompt
        ) -> None:
            async with session.stream_text(prompt=prompt, system=SYSTEM, max_tokens=4) as s:
                entered.set()
                async for _ in s:
                    pass

        async with provider.simple_execution(run) as execution:
            await entered.wait()
            await trio.sleep(0.25)  # well inside the first 512-token batch (~2 s)
            started = time.perf_counter()
            execution.cancel()
            result = await execution.result()
            latencies.append(time.perf_counter() - started)
        prompt_tokens = result.summary.llm_calls[0].usage.input_tokens or 0
    p99 = percentile(latencies, 0.99)
    return Comparison(
        key="local-cancel-prefill",
        name=f"local cancel latency during prefill ({prompt_tokens}-token prompt, p99)",
        unit="ms",
        candidate=p99 * 1000,
        baseline=20.0,
        ratio=p99 * 1000 / 20.0,
        target="<= 1.0x",
        passed=p99 * 1000 <= 20.0,
        detail=latency_detail(latencies, prompt_tokens=prompt_tokens),
    )


async def warm_ttft(provider: LlamaCppProvider, *, quick: bool) -> Comparison:
    """Cold: a history the cache has never seen. Warm: the next turn of that history."""
    colds: list[float] = []
    warms: list[float] = []
    after_cancel: list[float] = []
    for trial in range(1 if quick else 3):
        history: list[dict[str, str]] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Notes {trial}-{time.time_ns()}:\n" + FACTS * 115},
        ]

        key = f"bench-{trial}-{time.time_ns()}"

        async def turn(
            session: Session, history: list[dict[str, str]] = history, key: str = key
        ) -> TextResult:
            return await session.generate_text(messages=history, max_tokens=16, cache_key=key)

        cold = (await provider.simple_execution(turn).result()).unwrap()
        history += [
            {"role": "assistant", "content": cold.text},
            {"role": "user", "content": "Summarise that in one line."},
        ]
        warm = (await provider.simple_execution(turn).result()).unwrap()
        # A turn stopped mid-stream, then the next turn on the same history.
        got = trio.Event()

        async def stopped(
            session: Session,
            history: list[dict[str, str]] = history,
            got: trio.Event = got,
            key: str = key,
        ) -> None:
            async with session.stream_text(messages=history, max_tokens=200, cache_key=key) as s:
                async for _ in s:
                    got.set()

        async with provider.simple_execution(stopped) as execution:
            await got.wait()
            execution.cancel()
        history.append({"role": "user", "content": "Then name one river."})
        resumed = (await provider.simple_execution(turn).result()).unwrap()
        assert cold.time_to_first_token
        assert warm.time_to_first_token
        assert resumed.time_to_first_token
        colds.append(cold.time_to_first_token)
        warms.append(warm.time_to_first_token)
        after_cancel.append(resumed.time_to_first_token)
    cold_s, warm_s = statistics.median(colds), max(statistics.median(warms), max(after_cancel))
    return Comparison(
        key="local-ttft",
        name="local TTFT, 1,500-token KV session: cold vs warm (worst of warm, after-cancel)",
        unit="ms",
        candidate=warm_s * 1000,
        baseline=cold_s * 1000,
        ratio=cold_s / warm_s,
        target=">= 10x",
        passed=cold_s / warm_s >= 10,
        detail={
            "warm_ms": statistics.median(warms) * 1000,
            "after_cancel_ms": statistics.median(after_cancel) * 1000,
        },
    )


async def run_all(*, quick: bool, only: set[str] | None = None) -> list[Comparison]:
    with tempfile.TemporaryDirectory(prefix="agtl-bench-kv-") as cache_dir:
        return await _run_all(quick=quick, only=only, cache_dir=cache_dir)


async def _run_all(*, quick: bool, only: set[str] | None, cache_dir: str) -> list[Comparison]:
    provider = LlamaCppProvider(n_ctx=4096, cache_dir=cache_dir).with_default_options(temperature=0)
    benches = {
        "local-decode": decode_rate,
        "local-cancel-decode": cancel_during_decode,
        "local-cancel-prefill": cancel_during_prefill,
        "local-ttft": warm_ttft,
    }
    try:
        return [
            await bench(provider, quick=quick)
            for name, bench in benches.items()
            if only is None or name in only
        ]
    finally:
        await provider.aclose()
