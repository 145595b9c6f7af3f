"""OpenTelemetry traces and metrics for executions, LLM calls and tool calls (``agtl[otel]``).

``agtl.otel.instrument()`` turns them on for the process; ``uninstrument()`` turns them off.
Off (the default), agtl does no telemetry work at all. Depends only on ``opentelemetry-api``:
the application brings its SDK, exporters and global providers, and agtl's spans join its
traces as children of whatever span was current where an execution was started.

Spans follow the OpenTelemetry GenAI semantic conventions where they have a word for it
(``gen_ai.*``) and say the rest under ``agtl.*``:

* one span per execution, ``agtl.execution {workflow}``: id, status, cancel source and reason
  (a cancel is also a span event, at the moment it landed); a failed execution is an error
  span with the exception recorded, a canceled one is not an error;
* a child span per LLM call, ``chat {model}`` (kind client): provider, request and response
  model, request options, token usage with its provenance, cached tokens, finish reason, time
  to first token, prefill and decode time, cost;
* a child span per tool call, ``execute_tool {name}``, current while the tool runs, with its
  status.

Prompts, replies and tool arguments are recorded only with ``capture_content=True``; API keys
never (agtl never hands them to telemetry).
"""

from __future__ import annotations

import json
from typing import Any, Final

from opentelemetry import context, trace
from opentelemetry.metrics import MeterProvider, get_meter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from agtl import _observe
from agtl._vocabulary import Status as Outcome
from agtl._vocabulary import ToolCallStatus
from agtl.backend import GenerationRequest
from agtl.result import Result
from agtl.summary import GuardrailRecord, LLMCallSummary, ToolCall

__all__ = ["instrument", "instrumented", "uninstrument"]

_SCOPE: Final = "agtl"
_OPTIONS: Final = {
    "max_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "seed": "gen_ai.request.seed",
    "top_k": "gen_ai.request.top_k",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "stop": "gen_ai.request.stop_sequences",
}


def instrument(
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    *,
    capture_content: bool = False,
) -> None:
    """Record spans and metrics for every execution in this process from now on.

    With no providers, the application's global ones (``opentelemetry.trace`` and
    ``opentelemetry.metrics``) are used. Calling it again replaces the previous settings.
    """
    if not isinstance(capture_content, bool):
        raise TypeError("capture_content must be True or False")
    _observe.install(_Telemetry(tracer_provider, meter_provider, capture_content))


def uninstrument() -> None:
    """Stop recording. Spans of executions already running still end."""
    _observe.install(None)


def instrumented() -> bool:
    return isinstance(_observe.current(), _Telemetry)


class _Telemetry:
    """The observer behind :func:`instrument`: core events as spans and metrics."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        capture_content: bool,
    ) -> None:
        self.tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
        meter = get_meter(_SCOPE, meter_provider=meter_provider)
        self.capture_content = capture_content
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Input and output tokens per LLM call",
        )
        self.operation_duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="LLM call duration"
        )
        self.time_to_first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to an LLM call's first output",
        )
        self.time_per_output_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_per_output_chunk",
            unit="s",
            description="Time between output pieces of an LLM call after the first",
        )
        self.executions = meter.create_counter(
            "agtl.executions", unit="{execution}", description="Executions by final status"
        )

    # -- executions ---------------------------------------------------------------------------
    def execution_started(self, execution_id: str, workflow: str, streaming: bool) -> Span:
        return self.tracer.start_span(
            f"agtl.execution {workflow}",
            kind=SpanKind.INTERNAL,
            attributes={
                "agtl.execution.id": execution_id,
                "agtl.workflow": workflow,
                "agtl.streaming": streaming,
            },
        )

    def activate(self, handle: Span) -> object:
        return context.attach(trace.set_span_in_context(handle))

    def deactivate(self, token: Any) -> None:
        context.detach(token)

    def execution_finished(self, handle: Span, result: Result[Any]) -> None:
        summary = result.summary
        usage = summary.total_usage
        attributes: dict[str, Any] = {
            "agtl.status": result.status.value,
            "agtl.duration": summary.duration,
            "agtl.llm_calls": summary.llm_call_count,
            "agtl.tool_calls": len(summary.tool_calls),
        }
        _usage(attributes, usage.input_tokens, usage.output_tokens)
        if summary.total_cost is not None:
            attributes["agtl.cost_usd"] = float(summary.total_cost)
        if summary.parent_id is not None:
            attributes["agtl.parent_execution.id"] = summary.parent_id
        if result.cancel is not None:
            cancel = {"agtl.cancel.source": result.cancel.source.value}
            if result.cancel.reason is not None:
                cancel["agtl.cancel.reason"] = result.cancel.reason
            attributes.update(cancel)
            started = summary.started_at.timestamp()
            handle.add_event(
                "agtl.cancel", cancel, timestamp=int((started + result.cancel.at) * 1e9)
            )
        handle.set_attributes(attributes)
        if result.status is Outcome.FAILED and result.error is not None:
            handle.record_exception(result.error)
            problem = f"{type(result.error).__name__}: {result.error}"
            handle.set_status(Status(StatusCode.ERROR, problem))
        elif result.status is Outcome.SUCCEEDED:
            handle.set_status(Status(StatusCode.OK))
        handle.end()
        self.executions.add(1, {"agtl.status": result.status.value})

    # -- LLM calls ----------------------------------------------------------------------------
    def call_started(self, parent: Span, provider: str, request: GenerationRequest) -> Span:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": request.model,
            "agtl.execution.id": request.execution_id,
            "agtl.llm_call.index": request.call_index,
        }
        options = request.options
        for name, key in _OPTIONS.items():
            value = getattr(options, name, None)
            if value is not None:
                attributes[key] = list(value) if isinstance(value, tuple | list) else value
        if request.tools:
            attributes["agtl.tools"] = [tool.name for tool in request.tools]
        if self.capture_content:
            attributes["gen_ai.input.messages"] = json.dumps(
                [m.to_dict() for m in request.messages], ensure_ascii=False
            )
        return self.tracer.start_span(
            f"chat {request.model}",
            context=trace.set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )

    def call_finished(self, handle: Span, summary: LLMCallSummary, text: str) -> None:
        usage = summary.usage
        attributes: dict[str, Any] = {
            "gen_ai.response.model": summary.model,
            "gen_ai.response.finish_reasons": (summary.stop_reason.value,),
            "agtl.usage.provenance": usage.provenance.value,
        }
        _usage(attributes, usage.input_tokens, usage.output_tokens)
        if usage.cached_input_tokens is not None:
            attributes["agtl.usage.cached_input_tokens"] = usage.cached_input_tokens
        if summary.time_to_first_token is not None:
            attributes["agtl.time_to_first_token"] = summary.time_to_first_token
            decode = summary.duration - summary.time_to_first_token
            attributes["agtl.decode_seconds"] = max(0.0, decode)
        details = summary.details
        if details:
            for detail, key in (
                ("prefill_seconds", "agtl.prefill_seconds"),
                ("queue_wait", "agtl.queue_wait_seconds"),
            ):
                value = details.get(detail)
                if isinstance(value, int | float):
                    attributes[key] = float(value)
        if summary.cost is not None:
            attributes["agtl.cost_usd"] = float(summary.cost)
        if self.capture_content:
            attributes["gen_ai.output.messages"] = json.dumps(
                [{"role": "assistant", "content": text}], ensure_ascii=False
            )
        handle.set_attributes(attributes)
        if summary.error is not None:
            problem = f"{summary.error.type}: {summary.error.message}"
            handle.set_status(Status(StatusCode.ERROR, problem))
            handle.set_attribute("error.type", summary.error.type)
        self._attempts(handle, details.get("attempts") if details else None)
        handle.end()
        metric = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": summary.provider,
            "gen_ai.request.model": summary.model,
        }
        self.operation_duration.record(summary.duration, metric)
        for kind, count in (("input", usage.input_tokens), ("output", usage.output_tokens)):
            if count is not None:
                self.token_usage.record(count, {**metric, "gen_ai.token.type": kind})
        if summary.time_to_first_token is not None:
            self.time_to_first_chunk.record(summary.time_to_first_token, metric)
            output = usage.output_tokens
            if output is not None and output > 1:
                decode = max(0.0, summary.duration - summary.time_to_first_token)
                self.time_per_output_chunk.record(decode / (output - 1), metric)

    def _attempts(self, parent: Span, attempts: object) -> None:
        """A span per attempt of a call a fallback chain or a hedge served, under the call's."""
        if not isinstance(attempts, list):
            return
        context = trace.set_span_in_context(parent)
        for attempt in attempts:
            if not isinstance(attempt, dict) or "started_at" not in attempt:
                continue  # a backend's own retries, not a provider's attempt
            started = int(float(attempt["started_at"]) * 1e9)
            usage = attempt.get("usage") or {}
            attributes: dict[str, Any] = {
                "gen_ai.provider.name": attempt["provider"],
                "gen_ai.request.model": attempt.get("model") or "",
                "agtl.attempt.outcome": attempt["outcome"],
            }
            _usage(attributes, usage.get("input_tokens"), usage.get("output_tokens"))
            if attempt.get("cost") is not None:
                attributes["agtl.cost_usd"] = float(attempt["cost"])
            span = self.tracer.start_span(
                f"attempt {attempt['provider']} {attempt.get('model') or ''}".rstrip(),
                context=context,
                kind=SpanKind.CLIENT,
                attributes=attributes,
                start_time=started,
            )
            if attempt.get("error"):
                span.set_status(Status(StatusCode.ERROR, str(attempt["error"])))
            span.end(end_time=started + int(float(attempt["seconds"]) * 1e9))

    # -- tool calls ---------------------------------------------------------------------------
    def tool_started(self, parent: Span, name: str, call_id: str | None, arguments: Any) -> Span:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
        }
        if call_id is not None:
            attributes["gen_ai.tool.call.id"] = call_id
        if self.capture_content:
            attributes["gen_ai.tool.call.arguments"] = json.dumps(arguments, default=repr)
        return self.tracer.start_span(
            f"execute_tool {name}",
            context=trace.set_span_in_context(parent),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )

    def tool_finished(self, handle: Span, record: ToolCall) -> None:
        handle.set_attribute("agtl.tool.status", record.status.value)
        if record.duration is not None:
            handle.set_attribute("agtl.tool.duration", record.duration)
        if record.status in (ToolCallStatus.ERROR, ToolCallStatus.INVALID, ToolCallStatus.TIMEOUT):
            handle.set_status(Status(StatusCode.ERROR, record.error or record.status.value))
            handle.set_attribute("error.type", record.status.value)
        elif record.status is ToolCallStatus.CANCELLED:
            handle.add_event("agtl.cancel", {"agtl.tool.status": "cancelled"})
        if record.replayed:
            handle.set_attribute("agtl.tool.replayed", True)
        if record.approval is not None:
            handle.set_attribute("agtl.tool.approval.approved", record.approval.approved)
            handle.set_attribute("agtl.tool.approval.waited", record.approval.waited)
            if record.approval.reason is not None:
                handle.set_attribute("agtl.tool.approval.reason", record.approval.reason)
        if self.capture_content and record.result is not None:
            handle.set_attribute("gen_ai.tool.call.result", json.dumps(record.result, default=repr))
        handle.end()

    # -- guardrails ---------------------------------------------------------------------------
    def guardrail_started(self, parent: Span, name: str, stage: str) -> Span:
        return self.tracer.start_span(
            f"guardrail {name}",
            context=trace.set_span_in_context(parent),
            kind=SpanKind.INTERNAL,
            attributes={"agtl.guardrail.name": name, "agtl.guardrail.stage": stage},
        )

    def guardrail_finished(self, handle: Span, record: GuardrailRecord) -> None:
        handle.set_attribute("agtl.guardrail.verdict", record.verdict)
        handle.set_attribute("agtl.guardrail.checks", record.checks)
        handle.set_attribute("agtl.guardrail.tripped", record.tripped)
        if record.reason is not None:
            handle.set_attribute("agtl.guardrail.reason", record.reason)
        if record.tokens_paid is not None:
            handle.set_attribute("agtl.guardrail.tokens_paid", record.tokens_paid)
        if record.verdict == "error":
            handle.set_status(Status(StatusCode.ERROR, record.reason or "guardrail error"))
            handle.set_attribute("error.type", "guardrail_error")
        handle.end()


def _usage(attributes: dict[str, Any], input_tokens: int | None, output_tokens: int | None) -> None:
    if input_tokens is not None:
        attributes["gen_ai.usage.input_tokens"] = input_tokens
    if output_tokens is not None:
        attributes["gen_ai.usage.output_tokens"] = output_tokens
