"""Resilient model calls against the test suite's hostile OpenAI-compatible server
(``tests/providers/hostile_server.py``: real HTTP on 127.0.0.1, with the limits, outages and
stalls real providers have), through the OpenAI provider.

* ``resilience-limits``: 200 executions (24 with ``--quick``) against a server that answers
  8 requests at once and 120 per minute (in ``--quick``, 12 per 3 s, with the limiter's window
  set to match), each reply 0.1 s. With ``with_limits`` set to the server's limits: the
  server must send 0 responses 429, and the goodput is the shortest time the server's limits
  allow for the work (whole windows of requests, then the rest at 8 at a time) divided by
  the time it took: >= 0.95. The same work with retries only (no limits, ``max_retries=20``)
  is in the notes: its 429s, failures, goodput and p99 latency, beside the limited run's.
* ``resilience-fallback``: the primary is down (503 at once); from the failed attempt's end
  to the secondary's first output, p99, against 50 ms plus the secondary's own p99 time to
  first output measured alone in the same run.
* ``resilience-hedge``: a server that stalls 5% of first outputs for 5 s (2 s with
  ``--quick``); p99 time to first output without a hedge against with one at 0.5 s (0.1 s)
  to the same server: the ratio must be >= 5. The notes give the extra cost: attempts
  started per call. Every call must succeed.
* ``resilience-limiter``: a call through ``with_limits`` that never waits against the same
  call without limits (scripted model, ABBA batches): the difference per call, against a
  constant 20 us.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import trio

import agtl
from agtl import _limiter
from agtl.testing import Reply, ScriptedProvider
from agtl_openai import OpenAIProvider
from bench._harness import Comparison, interleaved, latency_detail, percentile
from tests.providers.hostile_server import HostileServer

REPLY_SECONDS = 0.1  # ten pieces 0.01 s apart
FALLBACK_BUDGET_MS = 50.0
LIMITER_BUDGET_US = 20.0


async def _ask(session: agtl.Session) -> str:
    return (await session.generate_text(prompt="go")).text


async def _run(
    provider: agtl.Provider, count: int, at_once: int = 1000
) -> tuple[float, list[agtl.Result[Any]], list[float]]:
    """(seconds, Results, each execution's seconds) of ``count`` executions, ``at_once``."""
    results: list[agtl.Result[Any]] = []
    took: list[float] = []
    gate = trio.CapacityLimiter(at_once)

    async def one() -> None:
        async with gate:
            began = trio.current_time()
            results.append(await provider.simple_execution(_ask))
            took.append(trio.current_time() - began)

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    return trio.current_time() - start, results, took


async def _with_server(body: Callable[[HostileServer], Any]) -> Any:
    server = HostileServer(keep_alive=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        try:
            return await body(server)
        finally:
            nursery.cancel_scope.cancel()


def _ideal_seconds(count: int, per_window: int, window: float, at_once: int) -> float:
    """The shortest time a server admitting ``at_once`` requests at once and ``per_window`` in
    any ``window`` seconds can finish ``count`` requests of ``REPLY_SECONDS``."""
    full = math.ceil(count / per_window) - 1
    rest = count - full * per_window
    return full * window + math.ceil(rest / at_once) * REPLY_SECONDS


async def limits(*, quick: bool) -> Comparison:
    count, per_window, window = (24, 12, 3.0) if quick else (200, 120, 60.0)
    saved = _limiter.WINDOW
    _limiter.WINDOW = window  # the limiter's "minute" is the server's window

    async def body(server: HostileServer) -> dict[str, Any]:
        server.admit, server.per_window, server.window = 8, per_window, window
        server.pace = REPLY_SECONDS / 10
        figures: dict[str, Any] = {}
        async with OpenAIProvider(base_url=server.base_url, max_retries=20) as client:
            paced = client.with_default_model("paced")
            limited = paced.with_limits(max_concurrent=8, requests_per_minute=per_window)
            for name, provider in (("limited", limited), ("retries_only", paced)):
                before = server.answered_429
                await trio.sleep(window)  # an empty window for each side
                seconds, results, took = await _run(provider, count)
                figures[name] = {
                    "seconds": seconds,
                    "answered_429": server.answered_429 - before,
                    "failed": sum(1 for r in results if not r.succeeded),
                    "goodput": _ideal_seconds(count, per_window, window, 8) / seconds,
                    "p99_s": percentile(took, 0.99),
                }
        return figures

    try:
        figures = await _with_server(body)
    finally:
        _limiter.WINDOW = saved
    limited = figures["limited"]
    problems = []
    if limited["answered_429"]:
        problems.append(f"{limited['answered_429']} responses 429 with limits set")
    if limited["failed"]:
        problems.append(f"{limited['failed']} executions failed with limits set")
    return Comparison(
        key="resilience-limits",
        name=f"{count} executions vs a server admitting 8 at once and {per_window} per "
        f"{window:g} s: goodput with with_limits at the server's limits (0 x 429)",
        unit="of ideal",
        candidate=limited["goodput"],
        baseline=0.95,
        ratio=limited["goodput"] / 0.95,
        target=">= 1.0x",
        passed=not problems and limited["goodput"] >= 0.95,
        detail={**figures, "problems": problems, "executions": count},
        baseline_kind="constant",
    )


async def fallback(*, quick: bool) -> Comparison:
    samples = 20 if quick else 200

    async def body(primary: HostileServer) -> tuple[list[float], list[float], list[str]]:
        primary.outage = 503

        async def second(server: HostileServer) -> tuple[list[float], list[float], list[str]]:
            server.pace = 0.001
            problems: list[str] = []
            async with (
                OpenAIProvider(base_url=primary.base_url) as down,
                OpenAIProvider(base_url=server.base_url) as up,
            ):
                alone = up.with_default_model("paced")
                # No breaker here: every call is to fall back, not pass the primary over.
                chain = down.with_default_model("paced").with_fallback(alone, failures=10**9)
                own: list[float] = []
                switch: list[float] = []
                for side in [0, 1] * samples:
                    result = await (alone if side == 0 else chain).simple_execution(_ask)
                    call = result.summary.llm_calls[0]
                    if not result.succeeded or call.time_to_first_token is None:
                        problems.append(f"a call failed: {result.error}")
                        continue
                    if side == 0:
                        own.append(call.time_to_first_token)
                        continue
                    attempts = call.details["attempts"]
                    assert isinstance(attempts, list)
                    if [a["outcome"] for a in attempts] != ["error", "answered"]:
                        problems.append(f"not a fallback: {attempts}")
                        continue
                    switch.append(call.time_to_first_token - attempts[0]["seconds"])
            return own, switch, problems

        result: tuple[list[float], list[float], list[str]] = await _with_server(second)
        return result

    own, switch, problems = await _with_server(body)
    budget = FALLBACK_BUDGET_MS + percentile(own, 0.99) * 1000
    p99 = percentile(switch, 0.99) * 1000
    return Comparison(
        key="resilience-fallback",
        name="fallback switch: the primary's failure to the secondary's first output, p99, "
        "vs 50 ms + the secondary's own p99 time to first output",
        unit="ms",
        candidate=p99,
        baseline=budget,
        ratio=p99 / budget,
        target="<= 1.0x",
        passed=not problems and p99 <= budget,
        detail=latency_detail(
            switch,
            valid=len(switch),
            attempted=samples,
            invalid_reasons=sorted(set(problems)),
            secondary_ttft_p99_ms=percentile(own, 0.99) * 1000,
        ),
    )


async def hedge(*, quick: bool) -> Comparison:
    count, stall, after = (60, 2.0, 0.1) if quick else (400, 5.0, 0.5)

    async def body(server: HostileServer) -> dict[str, Any]:
        server.stall_every, server.stall_seconds, server.pace = 20, stall, 0.001
        figures: dict[str, Any] = {}
        async with OpenAIProvider(base_url=server.base_url) as client:
            plain = client.with_default_model("stall-first")
            hedged = plain.with_hedge(plain, after=after)
            for name, provider in (("without", plain), ("with", hedged)):
                _, results, _ = await _run(provider, count, at_once=20)
                ttft = [r.summary.llm_calls[0].time_to_first_token or math.inf for r in results]
                attempts = [
                    len(a)
                    if isinstance(a := r.summary.llm_calls[0].details.get("attempts"), list)
                    else 1
                    for r in results
                ]
                figures[name] = {
                    "p99_ttft_s": percentile(ttft, 0.99),
                    "p50_ttft_s": statistics.median(ttft),
                    "failed": sum(1 for r in results if not r.succeeded),
                    "attempts_per_call": sum(attempts) / len(attempts),
                }
        return figures

    figures = await _with_server(body)
    ratio = figures["without"]["p99_ttft_s"] / figures["with"]["p99_ttft_s"]
    failed = figures["without"]["failed"] + figures["with"]["failed"]
    return Comparison(
        key="resilience-hedge",
        name=f"p99 time to first output, a server stalling 5% of them {stall:g} s: without a "
        f"hedge vs with one at {after:g} s (x better)",
        unit="s",
        candidate=figures["with"]["p99_ttft_s"],
        baseline=figures["without"]["p99_ttft_s"],
        ratio=ratio,
        target=">= 5x",
        passed=not failed and ratio >= 5,
        detail={**figures, "calls": count},
    )


async def limiter_overhead(*, quick: bool) -> Comparison:
    reply = Reply("ok")
    plain = ScriptedProvider(respond=lambda request: reply)
    limited = plain.with_limits(max_concurrent=1_000_000)

    def batch(provider: agtl.Provider) -> Callable[[int], Any]:
        async def run(n: int) -> None:
            for _ in range(n):
                result = await provider.simple_execution(_ask)
                assert result.value == "ok"

        return run

    iterations, rounds = (300, 5) if quick else (3000, 9)
    with_limits, without = await interleaved(
        batch(limited), batch(plain), iterations=iterations, rounds=rounds
    )
    added = max(0.0, with_limits - without) * 1e6
    return Comparison(
        key="resilience-limiter",
        name="shared limits' cost per call when nothing waits (with_limits vs none, scripted)",
        unit="us/call",
        candidate=added,
        baseline=LIMITER_BUDGET_US,
        ratio=added / LIMITER_BUDGET_US,
        target="<= 1.0x",
        passed=added <= LIMITER_BUDGET_US,
        detail={"with_limits_us": with_limits * 1e6, "without_us": without * 1e6},
        baseline_kind="constant",
    )


async def run_all(*, quick: bool, only: set[str] | None = None) -> list[Comparison]:
    figures = []
    for key, measure in (
        ("resilience-limits", limits),
        ("resilience-fallback", fallback),
        ("resilience-hedge", hedge),
        ("resilience-limiter", limiter_overhead),
    ):
        if only is None or key in only:
            started = time.perf_counter()
            figure = await measure(quick=quick)
            figure.detail["bench_seconds"] = time.perf_counter() - started
            figures.append(figure)
    return figures
