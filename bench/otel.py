"""Telemetry benchmark: what ``agtl.otel.instrument()`` costs per execution.

The same execution as ``overhead`` (one scripted call), with telemetry on (the OpenTelemetry
SDK as a service sets it up, a batch span processor, with an exporter that drops every span;
metrics into an SDK meter with no reader) against
telemetry off, in ABBA-ordered batches (target: on <= 1.3x off). Off, the core makes one read
of a global per execution, per LLM call and per tool call; the notes give that read's measured
cost as a share of the execution, and the SDK's own floor for the same telemetry (two bare
spans and five metric points) measured in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import agtl.otel
from agtl import Session, _observe
from agtl.testing import Reply, ScriptedProvider
from bench._harness import Comparison, interleaved


class _Drop(SpanExporter):
    """An exporter that exports nothing: the SDK's own work is all that is measured."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


async def overhead(*, quick: bool) -> Comparison:
    reply = Reply("ok")
    provider = ScriptedProvider(respond=lambda request: reply)
    dropped = _Drop()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(dropped))
    meter_provider = MeterProvider()

    async def workflow(session: Session) -> str:
        return (await session.generate_text(prompt="ping")).text

    async def run(n: int) -> None:
        for _ in range(n):
            result = await provider.simple_execution(workflow).result()
            assert result.value == "ok"

    async def on(n: int) -> None:
        agtl.otel.instrument(tracer_provider, meter_provider)
        try:
            await run(n)
        finally:
            agtl.otel.uninstrument()

    iterations, rounds = (300, 5) if quick else (3000, 9)
    candidate, baseline = await interleaved(on, run, iterations=iterations, rounds=rounds)
    tracer_provider.force_flush()
    assert dropped.spans >= 2 * iterations, "telemetry was not on"  # execution + call spans
    # The SDK's own floor for the same telemetry: two spans and five metric points, bare.
    tracer = tracer_provider.get_tracer("floor")
    histogram = meter_provider.get_meter("floor").create_histogram("floor")
    floor_runs = 2_000
    start = time.perf_counter()
    for _ in range(floor_runs):
        for _span in range(2):
            tracer.start_span("floor", attributes={"a": 1, "b": "x"}).end()
        for _point in range(5):
            histogram.record(1, {"k": "v"})
    floor = (time.perf_counter() - start) / floor_runs
    tracer_provider.force_flush()
    reads = 1_000_000
    start = time.perf_counter()
    for _ in range(reads):
        _observe.current()
    per_read = (time.perf_counter() - start) / reads
    ratio = candidate / baseline
    return Comparison(
        key="otel",
        name="execution with telemetry on (SDK, dropping exporter) vs off",
        unit="us/execution",
        candidate=candidate * 1e6,
        baseline=baseline * 1e6,
        ratio=ratio,
        target="<= 1.3x",
        passed=ratio <= 1.3,
        detail={
            "off_hook_ns": per_read * 2 * 1e9,  # one read per execution, one per call
            "off_share": per_read * 2 / baseline,
            "sdk_floor_us": floor * 1e6,
        },
    )
