"""Telemetry benchmark: what ``agtl.otel.instrument()`` adds to an execution.

The same execution as ``overhead`` (one scripted call), with telemetry on (the OpenTelemetry
SDK as a service sets it up, with an exporter that drops every span, and metrics aggregated
by an SDK meter with a reader, collected at the end and checked) against telemetry off, in
ABBA-ordered batches. Two span processors: ``otel`` the batch processor (spans leave on its
own thread), ``otel-simple`` the simple one (each span exported on the spot, in the
execution's own time). The figure is what turning telemetry on adds (on - off) against the
SDK's own cost for the same telemetry, measured in the same run: the same two spans, with
the same attributes, context and statuses, and the same six metric points, made by hand.
Off, the core asks for an execution's trace once (one read of a global, returning the
do-nothing trace that its calls and tool calls then carry); the notes give that step's
measured cost as a share of the execution.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from opentelemetry import context, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

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


#: The targets: what agtl adds with telemetry on <= this x the SDK's own cost for the same
#: spans and points, per span processor.
TARGETS = {"batch": 1.5, "simple": 1.5}


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
    floor = _sdk_floor(tracer_provider, meter_provider, runs=2_000 if quick else 10_000)
    tracer_provider.force_flush()
    reads = 1_000_000
    start = time.perf_counter()
    for _ in range(reads):
        _observe.trace_execution("id", "overhead", False)
    per_read = (time.perf_counter() - start) / reads
    added = candidate - baseline
    ratio = added / floor
    target = TARGETS[processor]
    return Comparison(
        key="otel" if processor == "batch" else "otel-simple",
        name=f"telemetry on ({processor} span processor): what agtl adds to an execution vs "
        "the SDK's own cost for the same spans and points",
        unit="us/execution",
        candidate=added * 1e6,
        baseline=floor * 1e6,
        ratio=ratio,
        target=f"<= {target}x",
        passed=ratio <= target,
        detail={
            "on_us": candidate * 1e6,
            "off_us": baseline * 1e6,
            "metric_points": points,
            "off_hook_ns": per_read * 1e9,  # one per execution
            "off_share": per_read / baseline,
        },
    )


def _sdk_floor(tracer_provider: TracerProvider, meter_provider: MeterProvider, runs: int) -> float:
    """Seconds per execution the SDK itself spends on the telemetry agtl emits for one
    execution with one call: the same two spans (the call's a child of the execution's, made
    current for the call as agtl does), with the same attributes set at start and at end, the
    same statuses, and the same six metric points with the same attributes."""
    tracer = tracer_provider.get_tracer("floor")
    meter = meter_provider.get_meter("floor")
    usage = meter.create_histogram("floor.token.usage")
    duration = meter.create_histogram("floor.duration")
    first_token = meter.create_histogram("floor.first_token")
    per_chunk = meter.create_histogram("floor.per_chunk")
    executions = meter.create_counter("floor.executions")
    metric = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "scripted",
        "gen_ai.request.model": "scripted-model",
    }
    start = time.perf_counter()
    for index in range(runs):
        execution_id = f"{index:032x}"
        parent = tracer.start_span(
            "agtl.execution workflow",
            kind=SpanKind.INTERNAL,
            attributes={
                "agtl.execution.id": execution_id,
                "agtl.workflow": "workflow",
                "agtl.streaming": False,
            },
        )
        token = context.attach(trace.set_span_in_context(parent))
        child = tracer.start_span(
            "chat scripted-model",
            context=trace.set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            attributes={**metric, "agtl.execution.id": execution_id, "agtl.llm_call.index": 0},
        )
        child.set_attributes(
            {
                "gen_ai.response.model": "scripted-model",
                "gen_ai.response.finish_reasons": ("eos",),
                "agtl.usage.provenance": "counted",
                "gen_ai.usage.input_tokens": 1,
                "gen_ai.usage.output_tokens": 2,
                "agtl.usage.cached_input_tokens": 0,
                "agtl.time_to_first_token": 0.0001,
                "agtl.decode_seconds": 0.00005,
                "agtl.cost_usd": 0.0,
            }
        )
        child.end()
        duration.record(0.0002, metric)
        usage.record(1, {**metric, "gen_ai.token.type": "input"})
        usage.record(2, {**metric, "gen_ai.token.type": "output"})
        first_token.record(0.0001, metric)
        per_chunk.record(0.00005, metric)
        context.detach(token)
        parent.set_attributes(
            {
                "agtl.status": "succeeded",
                "agtl.duration": 0.0004,
                "agtl.llm_calls": 1,
                "agtl.tool_calls": 0,
                "gen_ai.usage.input_tokens": 1,
                "gen_ai.usage.output_tokens": 2,
                "agtl.cost_usd": 0.0,
            }
        )
        parent.set_status(Status(StatusCode.OK))
        parent.end()
        executions.add(1, {"agtl.status": "succeeded"})
    floor = (time.perf_counter() - start) / runs
    tracer_provider.force_flush()
    return floor


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
