"""OpenTelemetry spans and metrics, read back from the SDK's in-memory exporter and reader."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import agtl
import agtl.otel
from agtl import CancelSignal, CancelSource, Session, Status, UsageLimits
from agtl.testing import Reply, ScriptedProvider
from agtl_llamacpp import LlamaCppProvider


class Telemetry:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.tracer_provider.get_tracer("tests")

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name.startswith(prefix)]

    def one(self, prefix: str) -> ReadableSpan:
        [span] = self.named(prefix)
        return span

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    setup = Telemetry()
    agtl.otel.instrument(setup.tracer_provider, setup.meter_provider)
    try:
        yield setup
    finally:
        agtl.otel.uninstrument()


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


async def ask(session: Session) -> str:
    return (await session.generate_text(prompt="hi", max_tokens=16, temperature=0.5)).text


async def test_a_simple_execution_and_its_call(telemetry: Telemetry) -> None:
    provider = ScriptedProvider("Hello there", model="scripted-model")
    with telemetry.tracer.start_as_current_span("request") as request:
        result = await provider.simple_execution(ask)
    execution = telemetry.one("agtl.execution")
    chat = telemetry.one("chat ")
    assert execution.name == "agtl.execution ask"
    assert parent_of(execution) == request.get_span_context().span_id  # the caller's span
    assert parent_of(chat) == span_id(execution)
    attributes = execution.attributes or {}
    assert attributes["agtl.execution.id"] == result.execution_id
    assert attributes["agtl.status"] == "succeeded"
    assert execution.status.status_code is StatusCode.OK
    call = result.summary.llm_calls[0]
    chat_attributes = chat.attributes or {}
    assert chat.kind is trace.SpanKind.CLIENT
    assert chat.name == "chat scripted-model"
    assert chat_attributes["gen_ai.operation.name"] == "chat"
    assert chat_attributes["gen_ai.provider.name"] == "scripted"
    assert chat_attributes["gen_ai.request.model"] == "scripted-model"
    assert chat_attributes["gen_ai.response.model"] == call.model
    assert chat_attributes["gen_ai.request.max_tokens"] == 16
    assert chat_attributes["gen_ai.request.temperature"] == 0.5
    assert chat_attributes["gen_ai.usage.input_tokens"] == call.usage.input_tokens
    assert chat_attributes["gen_ai.usage.output_tokens"] == call.usage.output_tokens
    assert chat_attributes["gen_ai.response.finish_reasons"] == ("eos",)
    assert chat_attributes["agtl.usage.provenance"] == "counted"
    assert chat_attributes["agtl.time_to_first_token"] == call.time_to_first_token
    assert chat_attributes["agtl.cost_usd"] == 0.0
    assert "gen_ai.input.messages" not in chat_attributes  # content is off by default
    assert "gen_ai.output.messages" not in chat_attributes


async def test_each_attempt_of_a_fallback_is_a_span_under_its_call(telemetry: Telemetry) -> None:
    outage = agtl.ServerError("503 down", status_code=503)
    provider = ScriptedProvider(Reply(error=outage)).with_fallback(
        ScriptedProvider("Hello there", model="second")
    )
    result = await provider.simple_execution(ask)
    assert result.succeeded
    chat = telemetry.one("chat ")
    failed, answered = sorted(telemetry.named("attempt "), key=lambda s: s.start_time or 0)
    assert parent_of(failed) == parent_of(answered) == span_id(chat)
    assert (failed.attributes or {})["agtl.attempt.outcome"] == "error"
    assert failed.status.status_code is StatusCode.ERROR
    assert "503 down" in (failed.status.description or "")
    assert (answered.attributes or {})["agtl.attempt.outcome"] == "answered"
    assert answered.name == "attempt scripted second"
    assert (failed.end_time or 0) <= (answered.start_time or 0) + 1_000_000  # one after the other


async def test_spans_made_inside_a_streaming_workflow_nest_under_its_span(
    telemetry: Telemetry,
) -> None:
    provider = ScriptedProvider("a b")

    async def gen(session: Session) -> AsyncIterator[agtl.Event]:
        with telemetry.tracer.start_as_current_span("my step"):
            text = (await session.generate_text(prompt="x")).text
        yield await session.done(text)

    await provider.streaming_execution(gen)
    execution = telemetry.one("agtl.execution")
    step = telemetry.one("my step")
    chat = telemetry.one("chat ")
    assert (execution.attributes or {})["agtl.streaming"] is True
    assert parent_of(step) == span_id(execution)  # the driver task sees the execution's span
    assert parent_of(chat) == span_id(execution)


async def canceled_by(source: CancelSource, telemetry: Telemetry) -> ReadableSpan:
    provider = ScriptedProvider(Reply(["w "] * 200, delay=0.01))
    signal = CancelSignal()

    async def talk(session: Session) -> str:
        async with session.stream_text(prompt="x") as stream:
            async for _ in stream:
                if source is CancelSource.SIGNAL:
                    signal.cancel("from the signal")
        return stream.text

    kwargs: dict[str, Any] = {}
    if source is CancelSource.SIGNAL:
        kwargs["signal"] = signal
    elif source is CancelSource.TIMEOUT:
        kwargs["timeout"] = 0.05
    elif source is CancelSource.LIMIT:
        kwargs["limits"] = UsageLimits(max_output_tokens=3)
    execution = provider.simple_execution(talk, **kwargs)
    if source is CancelSource.HANDLE:
        execution.cancel("from the handle")
        await execution
    elif source is CancelSource.ENCLOSING_SCOPE:
        with trio.move_on_after(0.05):
            await execution
    else:
        await execution
    return telemetry.one("agtl.execution")


@pytest.mark.parametrize("source", list(CancelSource))
async def test_a_cancel_is_an_event_not_an_error(
    telemetry: Telemetry, source: CancelSource
) -> None:
    span = await canceled_by(source, telemetry)
    attributes = span.attributes or {}
    assert attributes["agtl.status"] == "canceled"
    assert attributes["agtl.cancel.source"] == source.value
    assert span.status.status_code is StatusCode.UNSET  # canceled is not an error
    [event] = [e for e in span.events if e.name == "agtl.cancel"]
    assert (event.attributes or {})["agtl.cancel.source"] == source.value
    assert span.start_time is not None
    assert span.end_time is not None
    assert span.start_time <= event.timestamp <= span.end_time + 10_000_000


async def test_a_failed_execution_is_an_error_span_with_the_exception(
    telemetry: Telemetry,
) -> None:
    provider = ScriptedProvider()

    async def broken(session: Session) -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError("bad input")

    result = await provider.simple_execution(broken)
    assert result.status is Status.FAILED
    span = telemetry.one("agtl.execution")
    assert span.status.status_code is StatusCode.ERROR
    assert "ValueError: bad input" in (span.status.description or "")
    [exception] = [e for e in span.events if e.name == "exception"]
    assert (exception.attributes or {})["exception.type"] == "ValueError"


@agtl.tool
async def lookup(city: str) -> str:
    """Look a city up.

    Args:
        city: The city.
    """
    with trace.get_tracer("tests").start_as_current_span("inside the tool"):
        await trio.lowlevel.checkpoint()
    return f"{city}: sunny"


@agtl.tool
def blocking_lookup(city: str) -> str:
    """Look a city up, blocking.

    Args:
        city: The city.
    """
    with trace.get_tracer("tests").start_as_current_span("inside the thread"):
        return f"{city}: rainy"


async def test_tool_calls_are_spans_current_while_the_tool_runs(telemetry: Telemetry) -> None:
    trace.set_tracer_provider(telemetry.tracer_provider)  # for the tools' own tracer
    calls = (
        agtl.ToolCallRequest(id="c1", name="lookup", arguments='{"city": "Paris"}'),
        agtl.ToolCallRequest(id="c2", name="blocking_lookup", arguments='{"city": "Oslo"}'),
    )
    provider = ScriptedProvider(Reply(tool_calls=calls), "Sunny in Paris, rain in Oslo.")

    async def agent(session: Session) -> str:
        reply = await session.generate_text(prompt="weather?", tools=[lookup, blocking_lookup])
        return reply.text

    result = await provider.simple_execution(agent)
    assert result.status is Status.SUCCEEDED
    execution = telemetry.one("agtl.execution")
    tools = {s.name: s for s in telemetry.named("execute_tool")}
    assert set(tools) == {"execute_tool lookup", "execute_tool blocking_lookup"}
    for span in tools.values():
        assert parent_of(span) == span_id(execution)
        assert (span.attributes or {})["agtl.tool.status"] == "ok"
        assert (span.attributes or {})["gen_ai.operation.name"] == "execute_tool"
    assert (tools["execute_tool lookup"].attributes or {})["gen_ai.tool.call.id"] == "c1"
    assert parent_of(telemetry.one("inside the tool")) == span_id(tools["execute_tool lookup"])
    in_thread = telemetry.one("inside the thread")
    assert parent_of(in_thread) == span_id(tools["execute_tool blocking_lookup"])
    assert len(telemetry.named("chat ")) == 2
    assert (execution.attributes or {})["agtl.tool_calls"] == 2


async def test_a_failed_llm_call_is_an_error_span_with_its_type(telemetry: Telemetry) -> None:
    refusal = agtl.ServerError("the server melted", provider="scripted", status_code=500)
    provider = ScriptedProvider(Reply(["half "], error=refusal))
    result = await provider.simple_execution(ask)
    assert result.status is Status.FAILED
    chat = telemetry.one("chat ")
    assert chat.status.status_code is StatusCode.ERROR
    assert "ServerError: the server melted" in (chat.status.description or "")
    assert (chat.attributes or {})["error.type"] == "ServerError"
    assert (chat.attributes or {})["gen_ai.response.finish_reasons"] == ("error",)
    assert telemetry.one("agtl.execution").status.status_code is StatusCode.ERROR


@agtl.tool
async def broken_tool(city: str) -> str:
    """Fail.

    Args:
        city: The city.
    """
    await trio.lowlevel.checkpoint()
    raise RuntimeError(f"no data for {city}")


@agtl.tool(timeout=0.05)
async def slow_tool(city: str) -> str:
    """Take too long.

    Args:
        city: The city.
    """
    await trio.sleep(30)
    return city


async def test_failed_invalid_and_timed_out_tools_are_error_spans(telemetry: Telemetry) -> None:
    calls = (
        agtl.ToolCallRequest(id="c1", name="broken_tool", arguments='{"city": "Paris"}'),
        agtl.ToolCallRequest(id="c2", name="lookup", arguments='{"town": 3}'),
        agtl.ToolCallRequest(id="c3", name="slow_tool", arguments='{"city": "Oslo"}'),
    )
    provider = ScriptedProvider(Reply(tool_calls=calls), "I could not find out.")

    async def agent(session: Session) -> str:
        reply = await session.generate_text(
            prompt="weather?", tools=[broken_tool, lookup, slow_tool]
        )
        return reply.text

    result = await provider.simple_execution(agent)
    assert result.status is Status.SUCCEEDED, result.error  # the model was told, and answered
    statuses = {c.call_id: c.status for c in result.summary.tool_calls}
    assert statuses == {
        "c1": agtl.ToolCallStatus.ERROR,
        "c2": agtl.ToolCallStatus.INVALID,
        "c3": agtl.ToolCallStatus.TIMEOUT,
    }
    spans = {(s.attributes or {})["gen_ai.tool.call.id"]: s for s in telemetry.named("execute_")}
    assert set(spans) == {"c1", "c2", "c3"}
    for call_id, status in statuses.items():
        span = spans[call_id]
        attributes = span.attributes or {}
        assert span.status.status_code is StatusCode.ERROR, call_id
        assert attributes["agtl.tool.status"] == status.value
        assert attributes["error.type"] == status.value
    assert "no data for Paris" in (spans["c1"].status.description or "")


async def test_uninstrument_mid_run_keeps_the_running_trace_whole_and_starts_no_new_one(
    telemetry: Telemetry,
) -> None:
    provider = ScriptedProvider("first", "second")

    async def two_calls(session: Session) -> str:
        first = await session.generate_text(prompt="one")
        agtl.otel.uninstrument()  # while this execution runs, between its calls
        second = await session.generate_text(prompt="two")
        return first.text + " " + second.text

    result = await provider.simple_execution(two_calls)
    assert result.status is Status.SUCCEEDED
    assert result.value == "first second"
    # The execution started while on is traced to its end, the call made after the switch
    # included: its trace is whole, never a parent missing a child.
    execution = telemetry.one("agtl.execution")
    assert execution.status.status_code is StatusCode.OK
    assert (execution.attributes or {})["agtl.llm_calls"] == 2
    chats = telemetry.named("chat ")
    assert len(chats) == 2
    assert {parent_of(chat) for chat in chats} == {span_id(execution)}
    await ScriptedProvider("third").simple_execution(ask)
    assert len(telemetry.spans()) == 3  # nothing that starts once off is traced


async def test_content_is_recorded_only_when_asked(telemetry: Telemetry) -> None:
    agtl.otel.instrument(telemetry.tracer_provider, telemetry.meter_provider, capture_content=True)
    provider = ScriptedProvider("Paris.")
    await provider.simple_execution(ask)
    chat = telemetry.one("chat ").attributes or {}
    assert '"content": "hi"' in str(chat["gen_ai.input.messages"])
    assert '"content": "Paris."' in str(chat["gen_ai.output.messages"])


async def test_metrics_count_tokens_durations_and_executions(telemetry: Telemetry) -> None:
    provider = ScriptedProvider("one two three", "four")
    await provider.simple_execution(ask)
    execution = provider.simple_execution(ask)
    execution.cancel("never mind")
    await execution
    metrics = telemetry.metrics()
    usage = metrics["gen_ai.client.token.usage"]
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in usage}
    assert tokens == {"input": 1, "output": 3}
    assert metrics["gen_ai.client.operation.duration"][0].count == 1
    assert metrics["gen_ai.client.operation.time_to_first_chunk"][0].count == 1
    assert metrics["gen_ai.client.operation.time_per_output_chunk"][0].count == 1
    statuses = {p.attributes["agtl.status"]: p.value for p in metrics["agtl.executions"]}
    assert statuses == {"succeeded": 1, "canceled": 1}


async def test_nothing_is_recorded_once_uninstrumented(telemetry: Telemetry) -> None:
    agtl.otel.uninstrument()
    assert not agtl.otel.instrumented()
    await ScriptedProvider("x").simple_execution(ask)
    assert telemetry.spans() == []


def test_an_asyncio_callers_span_is_the_parent_through_agtl_aio(telemetry: Telemetry) -> None:
    provider = ScriptedProvider("from asyncio")

    async def main() -> int:
        with telemetry.tracer.start_as_current_span("asyncio request") as request:
            await agtl.aio.result(provider.simple_execution(ask))
            return request.get_span_context().span_id

    request_id = asyncio.run(main())
    assert parent_of(telemetry.one("agtl.execution")) == request_id


async def test_the_bundled_models_figures_reach_the_span(telemetry: Telemetry) -> None:
    async def story(session: Session) -> AsyncIterator[agtl.Event]:
        async with session.stream_text(prompt="Tell me about Paris.", max_tokens=24) as reply:
            async for piece in reply:
                yield session.emit("text", piece)
        yield await session.done(reply.text)

    async with LlamaCppProvider(n_ctx=1024).with_default_options(temperature=0) as model:
        result = await model.streaming_execution(story)
    call = result.summary.llm_calls[0]
    chat = telemetry.one("chat ").attributes or {}
    assert chat["gen_ai.provider.name"] == "llamacpp"
    assert chat["gen_ai.usage.input_tokens"] == call.usage.input_tokens
    assert chat["gen_ai.usage.output_tokens"] == call.usage.output_tokens
    assert chat["agtl.usage.provenance"] == "counted"
    assert chat["agtl.prefill_seconds"] == call.details["prefill_seconds"]
    assert chat["agtl.time_to_first_token"] == call.time_to_first_token
    assert chat["gen_ai.response.finish_reasons"] == (call.stop_reason.value,)
    execution = telemetry.one("agtl.execution").attributes or {}
    assert execution["gen_ai.usage.output_tokens"] == result.summary.total_usage.output_tokens


def _conventional_names() -> set[str]:
    """Every attribute and metric name the GenAI (and general) semantic conventions define, as
    the pinned opentelemetry-semantic-conventions package spells them."""
    import importlib
    import pkgutil

    import opentelemetry.semconv._incubating.attributes as incubating_attributes
    import opentelemetry.semconv._incubating.metrics as incubating_metrics
    import opentelemetry.semconv.attributes as stable_attributes

    names: set[str] = set()
    for package in (incubating_attributes, incubating_metrics, stable_attributes):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            names.update(v for k, v in vars(module).items() if k.isupper() and isinstance(v, str))
    return names


async def test_every_emitted_name_is_conventional_or_agtl_own(telemetry: Telemetry) -> None:
    """gen_ai.* names are the conventions' own; only names with no convention are agtl.*."""

    async def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    async def flow(session: Session) -> str:
        return (await session.generate_text(prompt="sum", tools=[agtl.tool(add)])).text

    script = ScriptedProvider(
        Reply("", tool_calls=[agtl.ToolCallRequest("c1", "add", {"a": 1, "b": 2})]),
        Reply("three"),
    )
    failing = ScriptedProvider(Reply("x", error=RuntimeError("boom")))
    agtl.otel.instrument(telemetry.tracer_provider, telemetry.meter_provider, capture_content=True)
    await script.simple_execution(flow)
    await failing.simple_execution(ask)
    cancelled = script.simple_execution(ask)
    cancelled.cancel("stop")
    await cancelled
    emitted = {name for span in telemetry.spans() for name in (span.attributes or {})}
    metrics = telemetry.metrics()
    emitted |= set(metrics)
    emitted |= {name for points in metrics.values() for p in points for name in p.attributes}
    known = _conventional_names()
    assert "gen_ai.client.operation.time_to_first_chunk" in emitted
    assert "gen_ai.tool.name" in emitted
    unknown = sorted(n for n in emitted if not n.startswith("agtl.") and n not in known)
    assert unknown == []


async def test_tool_spans_say_replayed_and_approval(telemetry: Telemetry) -> None:
    @agtl.tool(needs_approval=True)
    async def transfer(amount: int) -> str:
        """Send money."""
        return f"sent {amount}"

    def respond(request: agtl.GenerationRequest) -> Reply:
        if request.messages[-1].role is agtl.Role.TOOL:
            return Reply("done")
        return Reply("", tool_calls=[agtl.ToolCallRequest("t1", "transfer", {"amount": 5})])

    async def pay(session: Session) -> str:
        return (await session.generate_text(prompt="pay", tools=[transfer])).text

    journal = agtl.CallJournal()
    execution = ScriptedProvider(respond=respond).with_journal(journal).simple_execution(pay)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(execution.result)
        async for request in execution.approval_requests():
            request.deny("not today")
    denied = telemetry.one("execute_tool transfer").attributes or {}
    assert denied["agtl.tool.status"] == "denied"
    assert denied["agtl.tool.approval.approved"] is False
    assert denied["agtl.tool.approval.reason"] == "not today"
    again = agtl.CallJournal(journal.entries)
    telemetry.exporter.clear()
    await ScriptedProvider(respond=respond).with_journal(again).simple_execution(pay)
    replayed = telemetry.one("execute_tool transfer").attributes or {}
    assert replayed["agtl.tool.replayed"] is True
    assert replayed["agtl.tool.status"] == "denied"  # the recorded decision, not asked again


async def test_each_guardrail_is_a_span_under_its_call_with_its_verdict(
    telemetry: Telemetry,
) -> None:
    @agtl.guardrail
    async def polite(text: str) -> agtl.Verdict:
        return agtl.Verdict.ok()

    @agtl.guardrail(every="chunk")
    def no_shouting(text: str) -> agtl.Verdict:
        return agtl.Verdict.block("shouting") if "HEY" in text else agtl.Verdict.ok()

    provider = ScriptedProvider("calm words then HEY there")
    result = await provider.simple_execution(
        lambda s: s.generate_text(
            prompt="hi", input_guardrails=[polite], output_guardrails=[no_shouting]
        )
    )
    assert isinstance(result.error, agtl.GuardrailTripped)
    call = telemetry.one("chat")
    spans = {s.name: s for s in telemetry.named("guardrail ")}
    assert set(spans) == {"guardrail polite", "guardrail no_shouting"}
    for span in spans.values():
        assert parent_of(span) == span_id(call)
    polite_span, blocked = spans["guardrail polite"], spans["guardrail no_shouting"]
    assert polite_span.attributes is not None
    assert blocked.attributes is not None
    assert polite_span.attributes["agtl.guardrail.verdict"] == "ok"
    assert polite_span.attributes["agtl.guardrail.stage"] == "input"
    assert blocked.attributes["agtl.guardrail.verdict"] == "block"
    assert blocked.attributes["agtl.guardrail.reason"] == "shouting"
    assert blocked.attributes["agtl.guardrail.tripped"] is True
