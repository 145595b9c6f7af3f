"""Telemetry benchmark: what ``agtl.otel.instrument()`` costs per execution.

The same execution as ``overhead`` (one scripted call), with telemetry on (the OpenTelemetry
SDK as a service sets it up, with an exporter that drops every span, and metrics aggregated
by an SDK meter with a reader, collected at the end and checked) against telemetry off, in
ABBA-ordered batches. Two span processors: ``otel`` the batch processor (spans leave on its
own thread), ``otel-simple`` the simple one (each span exported on the spot, in the
execution's own time). Off, the core asks for an execution's trace once (one read of a global,
returning the do-nothing trace that its calls and tool calls then carry); the notes give
that step's measured cost as a share of the execution, and the SDK's own floor for the same
telemetry (two bare spans and five metric points) measured in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

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


#: The targets: on <= this x off, per span processor.
TARGETS = {"batch": 1.3, "simple": 1.4}


async def overhead(*, quick: bool, processor: str = "batch") -> Comparison:
    reply = Reply("ok")
    provider = ScriptedProvider(respond=lambda request: reply)
    dropped = _Drop()
    tracer_provider = TracerProvider()
    if processor == "batch":
        tracer_provider.add_span_processor(BatchSpanProcessor(dropped))
    else:
        tracer_provider.add_span_processor(SimpleSpanProcessor(dropped))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])

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
    points = _points(reader)
    assert points >= 1, "no metric reached the reader"
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
        _observe.trace_execution("id", overhead, False)
    per_read = (time.perf_counter() - start) / reads
    ratio = candidate / baseline
    target = TARGETS[processor]
    return Comparison(
        key="otel" if processor == "batch" else "otel-simple",
        name=f"execution with telemetry on (SDK, {processor} span processor, dropping exporter, "
        "metrics read) vs off",
        unit="us/execution",
        candidate=candidate * 1e6,
        baseline=baseline * 1e6,
        ratio=ratio,
        target=f"<= {target}x",
        passed=ratio <= target,
        detail={
            "metric_points": points,
            "off_hook_ns": per_read * 1e9,  # one per execution
            "off_share": per_read / baseline,
            "sdk_floor_us": floor * 1e6,
        },
    )


def _points(reader: InMemoryMetricReader) -> int:
    """How many data points the reader collected."""
    data = reader.get_metrics_data()
    if data is None:
        return 0
    return sum(
        len(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    )
