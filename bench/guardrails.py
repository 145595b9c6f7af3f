"""Guardrails and typed output that streams: how fast a trip stops the model, what a guardrail
costs a call that passes, and what parsing a partial object costs each piece.

* guardrails-trip: an output guardrail beside a scripted call that streams (a piece every
  millisecond) blocks once 40 pieces are out; from its verdict to the call's end, p99,
  against a constant 1 ms. A sample counts only if the call stopped there (the execution
  failed with GuardrailTripped, the call ended with an error, and far fewer pieces than the
  reply's 2000 were paid for);
* guardrails-trip-local: the same on the bundled model (a guardrail that blocks after 120
  characters of a long essay), against one raw llama-cpp-python decode step measured in
  this run + 5 ms; a sample counts only if the call stopped before its max_tokens;
* guardrails-noop: what a no-op input guardrail running beside a call adds to it: the
  same scripted call with and without one (ABBA batches), the difference per call against
  a constant 30 us;
* guardrails-partial: parsing a streamed object into partial values, per 4-character piece,
  at 1 KB (against a constant 20 us); the notes give the curve from 1 KB to 256 KB, beside
  re-parsing the whole text at each piece (pydantic-core's partial JSON parser, what
  re-parsing peers do), so the growth with the object's size shows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pydantic_core

import agtl
from agtl import Session
from agtl._partial_json import PartialJSON
from agtl.testing import Reply, ScriptedProvider
from agtl_llamacpp import LlamaCppProvider
from bench._harness import CancelSamples, Comparison, interleaved
from bench.local import MESSAGES, decode_step

TRIP_BUDGET_MS = 1.0
NOOP_BUDGET_US = 30.0
PARTIAL_BUDGET_US = 20.0
LOCAL_MARGIN_S = 0.005
CURVE_KB = (1, 4, 16, 64, 256)


def _trip_after(chars: int) -> agtl.Guardrail:
    @agtl.guardrail(name="enough", every="chunk")
    def enough(text: str) -> agtl.Verdict:
        return agtl.Verdict.block("long enough") if len(text) >= chars else agtl.Verdict.ok()

    return enough


def _stop_problem(result: agtl.Result[Any], most: int) -> tuple[float, str | None]:
    """The trip's verdict to the call's end, and why the sample does not count (if not)."""
    if not isinstance(result.error, agtl.GuardrailTripped):
        return 0.0, f"ended {result.status.value} without a trip"
    record = result.summary.tripped_guardrail
    [call] = result.summary.llm_calls
    if record is None or call.stop_reason is not agtl.StopReason.ERROR:
        return 0.0, "the call did not end with the trip"
    out = call.usage.output_tokens
    if out is None or out >= most:
        return 0.0, f"the call was paid {out} tokens: it did not stop early"
    return call.ended_at - record.at, None


async def trip_latency(*, quick: bool) -> Comparison:
    provider = ScriptedProvider(respond=lambda request: Reply("w " * 2000, delay=0.001))
    guard = _trip_after(80)  # 40 pieces of "w "
    samples = CancelSamples()
    for _ in range(30 if quick else 300):
        result = await provider.simple_execution(
            lambda s: s.generate_text(prompt="go", output_guardrails=[guard])
        )
        samples.add(*_stop_problem(result, 1000))
    return samples.figure(
        key="guardrails-trip",
        name="an output guardrail's block to the call's end, scripted (p99 vs a constant 1 ms)",
        budget_ms=TRIP_BUDGET_MS,
        baseline_kind="constant",
    )


async def trip_latency_local(*, quick: bool) -> Comparison:
    async with LlamaCppProvider(n_ctx=4096).with_default_options(temperature=0) as provider:
        step = await decode_step(provider)
        guard = _trip_after(120)
        samples = CancelSamples()
        for _ in range(5 if quick else 30):
            result = await provider.simple_execution(
                lambda s: s.generate_text(
                    messages=MESSAGES, max_tokens=400, output_guardrails=[guard]
                )
            ).result()
            samples.add(*_stop_problem(result, 400))
    return samples.figure(
        key="guardrails-trip-local",
        name="an output guardrail's block to the call's end, bundled model "
        "(p99 vs one raw decode step + 5 ms)",
        budget_ms=(step + LOCAL_MARGIN_S) * 1000,
        baseline_kind="measured",
        decode_step_ms=step * 1000,
    )


@agtl.guardrail(name="noop")
async def _noop(text: str) -> agtl.Verdict:
    return agtl.Verdict.ok()


@agtl.guardrail(name="noop_sync")
def _noop_sync(text: str) -> agtl.Verdict:
    return agtl.Verdict.ok()


async def noop_cost(*, quick: bool) -> Comparison:
    reply = Reply("ok")
    provider = ScriptedProvider(respond=lambda request: reply)

    async def guarded(session: Session) -> str:
        return (await session.generate_text(prompt="go", input_guardrails=[_noop])).text

    async def guarded_sync(session: Session) -> str:
        return (await session.generate_text(prompt="go", input_guardrails=[_noop_sync])).text

    async def plain(session: Session) -> str:
        return (await session.generate_text(prompt="go")).text

    def batch(workflow: Callable[[Session], Any]) -> Callable[[int], Any]:
        async def run(n: int) -> None:
            for _ in range(n):
                result = await provider.simple_execution(workflow)
                assert result.value == "ok", result

        return run

    iterations, rounds = (300, 5) if quick else (3000, 9)
    with_guard, without = await interleaved(
        batch(guarded), batch(plain), iterations=iterations, rounds=rounds
    )
    with_sync, without_again = await interleaved(
        batch(guarded_sync), batch(plain), iterations=iterations, rounds=rounds
    )
    added = max(0.0, with_guard - without) * 1e6
    return Comparison(
        key="guardrails-noop",
        name="a no-op async input guardrail beside a call: what it adds per call (scripted)",
        unit="us/call",
        candidate=added,
        baseline=NOOP_BUDGET_US,
        ratio=added / NOOP_BUDGET_US,
        target="<= 1.0x",
        passed=added <= NOOP_BUDGET_US,
        detail={
            "with_guardrail_us": with_guard * 1e6,
            "without_us": without * 1e6,
            "sync_added_us": max(0.0, with_sync - without_again) * 1e6,
        },
        baseline_kind="constant",
    )


def _object_text(kb: int) -> str:
    """A JSON object of about ``kb`` KB: a title and a list of small items."""
    items: list[dict[str, Any]] = []
    size = 40
    while size < kb * 1024:
        item = {"name": f"item number {len(items)}", "price": len(items) * 1.25, "tags": ["a"]}
        items.append(item)
        size += len(json.dumps(item)) + 2
    return json.dumps({"title": "A list", "items": items})


def _per_piece(text: str, parse: Callable[[list[str]], None], repeats: int) -> float:
    """The best seconds per 4-character piece of ``parse`` over ``repeats`` runs."""
    pieces = [text[i : i + 4] for i in range(0, len(text), 4)]
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        parse(pieces)
        best = min(best, time.perf_counter() - started)
    return best / len(pieces)


def _incremental(pieces: list[str]) -> None:
    parser = PartialJSON()
    for piece in pieces:
        if parser.feed(piece):
            parser.snapshot()
    parser.finish()
    assert parser.complete


def _reparsed(pieces: list[str]) -> None:
    text = ""
    for piece in pieces:
        text += piece
        pydantic_core.from_json(text, allow_partial="trailing-strings")


def partial_parsing(*, quick: bool) -> Comparison:
    curve: dict[str, dict[str, float]] = {}
    for kb in CURVE_KB[:3] if quick else CURVE_KB:
        text = _object_text(kb)
        ours = _per_piece(text, _incremental, 3 if quick else 7)
        whole = _per_piece(text, _reparsed, 1 if kb >= 64 else 3)
        curve[f"{kb}KB"] = {"incremental_us": ours * 1e6, "reparse_us": whole * 1e6}
    at_1kb = curve["1KB"]["incremental_us"]
    return Comparison(
        key="guardrails-partial",
        name="partial-object parsing per 4-character piece at 1 KB (vs a constant 20 us)",
        unit="us/piece",
        candidate=at_1kb,
        baseline=PARTIAL_BUDGET_US,
        ratio=at_1kb / PARTIAL_BUDGET_US,
        target="<= 1.0x",
        passed=at_1kb <= PARTIAL_BUDGET_US,
        detail={"parse_curve": curve},
        baseline_kind="constant",
    )


async def run_all(*, quick: bool, only: set[str] | None = None) -> list[Comparison]:
    figures = []
    for key, measure in (
        ("guardrails-trip", trip_latency),
        ("guardrails-trip-local", trip_latency_local),
        ("guardrails-noop", noop_cost),
    ):
        if only is None or key in only:
            started = time.perf_counter()
            figure = await measure(quick=quick)
            figure.detail["bench_seconds"] = time.perf_counter() - started
            figures.append(figure)
    if only is None or "guardrails-partial" in only:
        figures.append(partial_parsing(quick=quick))
    return figures
