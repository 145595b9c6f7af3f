"""Telemetry: an agent's execution, its LLM calls and its tool call as OpenTelemetry spans.

The application owns OpenTelemetry: here it sets up the SDK with the console exporter (one
line per span as it ends), runs a tool-using execution on the bundled model under a span of
its own, and prints the span tree. Run it with ``python examples/otel_console.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agtl
import agtl.otel
from agtl_llamacpp import LlamaCppProvider


@agtl.tool
async def get_weather(city: str) -> str:
    """Current weather of a city.

    Args:
        city: The city's name.
    """
    return f"sunny and 21 degrees in {city}"


async def weather(session: agtl.Session) -> str:
    reply = await session.generate_text(
        prompt="What is the weather in Paris?",
        tools=[get_weather],
        tool_choice="get_weather",
        max_tokens=48,
        temperature=0,
    )
    return reply.text


def one_line(span: ReadableSpan) -> str:
    parent = "-" if span.parent is None else format(span.parent.span_id, "016x")[:8]
    own = format(span.context.span_id, "016x")[:8] if span.context else "?"
    return f"span {span.name!r} id={own} parent={parent} status={span.status.status_code.name}\n"


def tree(spans: Sequence[ReadableSpan]) -> list[str]:
    """The spans as an indented tree, parents first."""
    children: dict[int | None, list[ReadableSpan]] = {}
    ids = {s.context.span_id for s in spans if s.context}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent and span.parent.span_id in ids else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in children.get(parent, []):
            attributes = span.attributes or {}
            facts = [
                f"{key}={attributes[key]!s}"
                for key in (
                    "agtl.status",
                    "gen_ai.usage.input_tokens",
                    "gen_ai.usage.output_tokens",
                    "agtl.tool.status",
                )
                if key in attributes
            ]
            lines.append("  " * depth + span.name + (f"  ({', '.join(facts)})" if facts else ""))
            if span.context:
                walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return lines


async def main() -> tuple[agtl.Result[str], list[str]]:
    collected = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(formatter=one_line)))
    provider.add_span_processor(SimpleSpanProcessor(collected))
    agtl.otel.instrument(tracer_provider=provider)
    try:
        async with LlamaCppProvider(n_ctx=2048) as model:
            with provider.get_tracer("my-app").start_as_current_span("handle request"):
                result = await model.simple_execution(weather)
    finally:
        agtl.otel.uninstrument()
    lines = tree(collected.get_finished_spans())
    print("\n".join(lines))
    return result, lines


if __name__ == "__main__":
    trio.run(main)
