"""Local model benchmarks (the bundled SmolLM2 through agtl-llamacpp).

* decode tokens/s through the provider's stream vs raw llama-cpp-python streaming the same
  chat with the same settings, interleaved (target >= 0.97);
* cancel latency, cancel() to result() returning: during decode (target p99 <= one decode
  step of raw llama-cpp-python, measured in the same run, + 5 ms) and during the prefill of a
  ~1,800-token prompt (target p99 <= a constant 20 ms). Each sample is checked to have
  cancelled in the phase it claims; invalid samples are counted, never dropped;
* time to first token with a ~1,500-token history: warm (prefix in the KV cache) vs cold,
  and warm right after a cancelled turn (target >= 10x);
* time to first token of a short question on an idle machine and under realistic loads (a
  process spinning on a core, a second llama.cpp process decoding, a C compiler in a loop):
  the provider's default prompt threads vs the better of every core and one thread (target:
  the worst load within 1.5x, and idle within 1.15x of every core).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, cast

import trio

from agtl import Result, Session, Status, StopReason, TextResult
from agtl_llamacpp import LlamaCppProvider
from bench._harness import (
    CancelSamples,
    Comparison,
    abba,
    cancel_mid_stream,
    ratio_interval,
)

SYSTEM = "You are a helpful assistant."
ESSAY = "Write a long, detailed essay about the history of the sea and ships."
FACTS = "Rivers carry water from the mountains down to the sea, shaping valleys. "


Messages = list[dict[str, str]]
MESSAGES: Messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ESSAY}]


async def _raw_decode(provider: LlamaCppProvider, messages: Messages, max_tokens: int) -> float:
    """Raw llama-cpp-python streaming the chat on the provider's own context: content
    chunks/s (the same unit as the provider's text deltas/s)."""
    llama = provider._engine.llama

    def raw() -> float:
        stamps: list[float] = []
        chunks: Any = llama.create_chat_completion(
            messages=cast(Any, messages), max_tokens=max_tokens, temperature=0, stream=True
        )
        for chunk in chunks:
            if chunk["choices"][0]["delta"].get("content"):
                stamps.append(time.perf_counter())
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    async with provider._engine.turn:  # the raw baseline uses the same context, in turn
        return await trio.to_thread.run_sync(raw)


async def decode_rate(provider: LlamaCppProvider, *, quick: bool) -> Comparison:
    max_tokens = 48 if quick else 160

    async def via_agtl() -> float:
        stamps: list[float] = []

        async def run(session: Session) -> None:
            async with session.stream_text(messages=MESSAGES, max_tokens=max_tokens) as stream:
                async for _ in stream:
                    stamps.append(time.perf_counter())

        result = await provider.simple_execution(run).result()
        assert result.succeeded, result
        # Text deltas per second, as the raw side counts its content chunks: the same unit.
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    async def via_raw() -> float:
        return await _raw_decode(provider, MESSAGES, max_tokens)

    rates: dict[str, list[float]] = {"agtl": [], "raw": []}
    await via_agtl()  # warm up both paths (page in the weights, allocate buffers)
    await via_raw()
    for side in abba(2 if quick else 12, "agtl", "raw"):
        rates[side].append(await (via_agtl() if side == "agtl" else via_raw()))
    candidate, baseline = statistics.median(rates["agtl"]), statistics.median(rates["raw"])
    low, high = ratio_interval(rates["agtl"], rates["raw"])
    return Comparison(
        key="local-decode",
        name="local decode text deltas/s (provider stream vs raw llama-cpp-python chunks/s)",
        unit="deltas/s",
        candidate=candidate,
        baseline=baseline,
        ratio=candidate / baseline,
        target=">= 0.97x",
        passed=candidate / baseline >= 0.97,
        detail={
            "ratio_ci95": [low, high],
            "rounds": len(rates["agtl"]),
            "agtl_rates": rates["agtl"],
            "raw_rates": rates["raw"],
        },
    )


async def decode_step(provider: LlamaCppProvider) -> float:
    """One decode step of raw llama-cpp-python on ``provider``'s model, in seconds: the
    median of three runs, measured now (the base of every stop budget on the local model)."""
    raw_rates = [await _raw_decode(provider, MESSAGES, 64) for _ in range(3)]
    return 1 / statistics.median(raw_rates)


async def cancel_during_decode(provider: LlamaCppProvider, *, quick: bool) -> Comparison:
    """The budget is one decode step of raw llama-cpp-python, measured in this run, + 5 ms."""
    step = await decode_step(provider)
    samples = CancelSamples()
    for _ in range(5 if quick else 30):
        latency, _, problem = await cancel_mid_stream(
            provider, after=8, messages=MESSAGES, max_tokens=400
        )
        samples.add(latency, problem)
    return samples.figure(
        key="local-cancel-decode",
        name="local cancel latency during decode (p99 vs one raw decode step + 5 ms)",
        budget_ms=(step + 0.005) * 1000,
        baseline_kind="measured",
        decode_step_ms=step * 1000,
    )


async def cancel_during_prefill(provider: LlamaCppProvider, *, quick: bool) -> Comparison:
    """Cancel after the worker started processing the prompt and before the first token."""
    samples = CancelSamples()
    prompt_tokens = 0
    rng = random.Random(7)
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

        before = provider._engine.prefills_started
        async with provider.simple_execution(run) as execution:
            await entered.wait()
            engine = provider._engine
            with trio.fail_after(10):
                # The worker counts each prompt it begins to process; no event says so, so
                # poll for this one.
                while engine.prefills_started == before:  # noqa: ASYNC110
                    await trio.sleep(0.001)
            # Somewhere in the first few hundred ms of a prefill that takes seconds.
            await trio.sleep(rng.uniform(0.0, 0.4))
            started = time.perf_counter()
            execution.cancel()
            result = await execution.result()
            latency = time.perf_counter() - started
        samples.add(latency, _prefill_problem(result))
        prompt_tokens = result.summary.llm_calls[0].usage.input_tokens or 0
    return samples.figure(
        key="local-cancel-prefill",
        name=f"local cancel latency during prefill ({prompt_tokens}-token prompt, p99 vs 20 ms)",
        budget_ms=20.0,
        baseline_kind="constant",
        prompt_tokens=prompt_tokens,
    )


def _prefill_problem(result: Result[Any]) -> str | None:
    """Why ``result`` is not a cancel during the prompt's processing (None: it is)."""
    if result.status is not Status.CANCELED:
        return f"status {result.status.value}, not canceled"
    call = result.summary.llm_calls[0]
    if call.stop_reason is not StopReason.CANCELLED:
        return f"the call ended by itself ({call.stop_reason.value})"
    if call.usage.output_tokens != 0 or call.time_to_first_token is not None:
        return "the first token had already come"
    if not call.details.get("prefill_started"):
        return "the prompt was never processed (the worker had not begun on it)"
    return None


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


#: Other work on the machine while the TTFT is measured, each a process of its own.
_LOADS: dict[str, str] = {
    # A Python loop holding one core.
    "spin": "while True: sum(range(10_000))",
    # A second llama.cpp process decoding, what a laptop running two agents does.
    "llama": (
        "import trio\n"
        "from agtl_llamacpp import LlamaCppProvider\n"
        "async def go(session):\n"
        "    await session.generate_text(prompt='Write a long story.', max_tokens=400,"
        " temperature=0.8)\n"
        "async def main():\n"
        "    async with LlamaCppProvider(n_ctx=1024) as p:\n"
        "        while True:\n"
        "            await p.simple_execution(go).result()\n"
        "trio.run(main)\n"
    ),
    # A C compiler in a loop, what a CI box or a developer's build does.
    "gcc": (
        "import os, subprocess, tempfile\n"
        "d = tempfile.mkdtemp()\n"
        "src = os.path.join(d, 'big.c')\n"
        "open(src, 'w').write(''.join(f'int f{i}(int x) {{ int s = 0; for (int j = 0; j < x;"
        " j++) s += j * {i} % 7; return s; }}\\n' for i in range(3000)))\n"
        "while True: subprocess.run(['gcc', '-O2', '-c', src, '-o', src + '.o'])\n"
    ),
}


def _start_load(kind: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _LOADS[kind]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its children (gcc) go with it
    )


def _stop_load(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


async def busy_ttft(provider: LlamaCppProvider, *, quick: bool) -> Comparison:
    """The provider's default prompt threads (which follow what other processes leave idle)
    against the better of a fixed choice, every core or one, on an idle machine and under
    each load; the figure is the worst load's ratio, and the default must also stay within
    15% of every core on the idle machine."""
    cores = os.cpu_count() or 1
    every = LlamaCppProvider(n_ctx=4096, n_threads_batch=cores).with_default_options(temperature=0)
    one = LlamaCppProvider(n_ctx=4096, n_threads_batch=1).with_default_options(temperature=0)
    sides = {"default": provider, "every core": every, "one": one}
    rounds = 2 if quick else 8
    loads = ["spin"] if quick else ["spin", "llama"] + (["gcc"] if shutil.which("gcc") else [])
    asked = iter(range(1_000_000))

    async def ask(session: Session) -> TextResult:
        # A new first line each time: no prefix of the prompt is in the KV cache already.
        return await session.generate_text(
            prompt="What is the capital of France? Answer in one short sentence, please.",
            system=f"Request {next(asked)}. {SYSTEM}",
            max_tokens=1,
        )

    async def ttft(side: LlamaCppProvider) -> float:
        result = await side.simple_execution(ask).result()
        call = result.summary.llm_calls[0]
        cached = call.details["cached_tokens"]
        prompt = call.usage.input_tokens
        # Only the template's opening and the first characters of the nonce may be reused.
        assert isinstance(cached, int), cached
        assert prompt is not None, call
        assert cached * 4 < prompt, f"{cached} of {prompt} prompt tokens came from the KV cache"
        first = result.summary.time_to_first_token
        assert result.status is Status.SUCCEEDED, result
        assert first is not None, result
        return first

    async def measure() -> dict[str, float]:
        times: dict[str, list[float]] = {name: [] for name in sides}
        for round_ in range(rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for name in order:
                times[name].append(await ttft(sides[name]))
                await trio.sleep(0.2)  # a user's pause: the idle window the default reads
        return {name: statistics.median(values) for name, values in times.items()}

    medians: dict[str, dict[str, float]] = {}
    try:
        for side in sides.values():
            await ttft(side)
        medians["idle"] = await measure()
        for load in loads:
            process = _start_load(load)
            try:
                await trio.sleep(6.0 if load == "llama" else 2.0)  # the load under way
                assert process.poll() is None, f"the {load} load did not start"
                medians[load] = await measure()
            finally:
                _stop_load(process)
    finally:
        await every.aclose()
        await one.aclose()
    ratios = {
        load: m["default"] / min(m["every core"], m["one"])
        for load, m in medians.items()
        if load != "idle"
    }
    worst = max(ratios, key=lambda load: ratios[load])
    idle = medians["idle"]["default"] / medians["idle"]["every core"]
    busy = medians[worst]
    return Comparison(
        key="local-ttft-busy",
        name="local TTFT of a short question under load: the default prompt threads vs the "
        "better of every core and one (worst load)",
        unit="ms",
        candidate=busy["default"] * 1000,
        baseline=min(busy["every core"], busy["one"]) * 1000,
        ratio=ratios[worst],
        target="<= 1.5x, idle <= 1.15x",
        passed=ratios[worst] <= 1.5 and idle <= 1.15,
        detail={
            "worst_load": worst,
            "idle_ratio": idle,
            "rounds": rounds,
            **{
                f"{load}_{name.replace(' ', '_')}_ms": value * 1000
                for load, m in medians.items()
                for name, value in m.items()
            },
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
        "local-ttft-busy": busy_ttft,
    }
    try:
        return [
            await bench(provider, quick=quick)
            for name, bench in benches.items()
            if only is None or name in only
        ]
    finally:
        await provider.aclose()
