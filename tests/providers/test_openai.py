"""The OpenAI-compatible provider: a real local server (llama_cpp.server) and a hostile one."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import capture_logs

import agtl
import agtl.otel
from agtl import Provenance, Session, Status, StopReason
from agtl_openai import OpenAIProvider
from tests.local import free_port
from tests.providers.hostile_server import REFUSALS, HostileServer
from tests.waiting import wait_for

SYSTEM = "You are a helpful assistant."
QUESTION = "What is the capital of France?"
SECRET = "sk-test-0123456789-DO-NOT-LEAK"


@pytest.fixture
async def provider(server_url: str) -> AsyncIterator[OpenAIProvider]:
    async with (
        OpenAIProvider(base_url=server_url)
        .with_default_model("smollm2")
        .with_default_options(temperature=0) as provider
    ):
        yield provider


def hostile_provider(server: HostileServer, **kwargs: Any) -> OpenAIProvider:
    return OpenAIProvider(api_key=SECRET, base_url=server.base_url, **kwargs)


async def ask(session: Session) -> agtl.TextResult:
    return await session.generate_text(prompt=QUESTION, system=SYSTEM, max_tokens=32)


# -- the real server ---------------------------------------------------------------------------


async def test_generate_against_a_real_server(provider: OpenAIProvider) -> None:
    result = await provider.simple_execution(ask).result()
    reply = result.unwrap()
    assert reply.text == "The capital of France is Paris."
    assert reply.stop_reason is StopReason.EOS
    # llama_cpp.server sends no usage in streams: agtl estimates it and says so.
    assert reply.usage.provenance is Provenance.ESTIMATED
    assert reply.usage.output_tokens == agtl.estimate_tokens(reply.text)
    assert result.summary.llm_calls[0].details["attempts"] == [{"attempt": 1, "ok": True}]


async def test_stream_against_a_real_server(provider: OpenAIProvider) -> None:
    deltas: list[str] = []

    async def gen(session: Session) -> AsyncIterator[agtl.Event]:
        async with session.stream_text(prompt=QUESTION, system=SYSTEM) as stream:
            async for delta in stream:
                deltas.append(delta)
                yield session.emit("chunk", delta)
        yield await session.done(stream.text)

    result = await provider.streaming_execution(gen).result()
    assert result.value == "".join(deltas) == "The capital of France is Paris."
    assert len(deltas) > 3


async def test_cancel_mid_stream_then_the_server_still_answers(provider: OpenAIProvider) -> None:
    seen: list[str] = []
    enough = trio.Event()

    async def essay(session: Session) -> str:
        async with session.stream_text(
            prompt="Write a long essay about the sea.", system=SYSTEM
        ) as s:
            async for delta in s:
                seen.append(delta)
                if len(seen) == 5:
                    enough.set()
        return s.text

    async with provider.simple_execution(essay) as execution:
        await wait_for(enough, "five deltas of the essay")
        execution.cancel("stop")
        result = await execution.result()
    assert result.status is Status.CANCELED
    assert result.partial is not None
    assert result.partial.text == "".join(seen)
    call = result.summary.llm_calls[0]
    assert call.stop_reason is StopReason.CANCELLED
    assert call.usage.provenance is Provenance.ESTIMATED
    assert call.usage.output_tokens == agtl.estimate_tokens("".join(seen))
    assert (await provider.simple_execution(ask).result()).unwrap().text.endswith("Paris.")


async def test_cancel_before_begin_sends_nothing(provider: OpenAIProvider) -> None:
    execution = provider.simple_execution(ask)
    execution.cancel()
    result = await execution.result()
    assert result.status is Status.CANCELED
    assert result.summary.llm_call_count == 0


async def test_first_token_timeout_against_a_real_server(provider: OpenAIProvider) -> None:
    async def impatient(session: Session) -> str:
        try:
            await session.generate_text(prompt=QUESTION, system=SYSTEM, first_token_timeout=0.001)
        except agtl.FirstTokenTimeoutError:
            return (await ask(session)).text
        return "no timeout?"

    result = await provider.simple_execution(impatient).result()
    assert result.unwrap() == "The capital of France is Paris."
    first = result.summary.llm_calls[0]
    assert first.error is not None
    assert first.error.type == "FirstTokenTimeoutError"
    assert first.usage.output_tokens == 0


async def test_structured_output_against_a_real_server(provider: OpenAIProvider) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }

    async def structured(session: Session) -> Any:
        reply = await session.generate_text(
            prompt="Give the capital of France as JSON.",
            system=SYSTEM,
            max_tokens=48,
            response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
        )
        return json.loads(reply.text)

    value = (await provider.simple_execution(structured).result()).unwrap()
    assert list(value) == ["city"]
    assert isinstance(value["city"], str)


async def test_estimated_output_never_exceeds_max_tokens_on_a_length_stop(
    provider: OpenAIProvider,
) -> None:
    async def ramble(session: Session) -> agtl.TextResult:
        return await session.generate_text(
            prompt="Describe the history of international telecommunications.", max_tokens=48
        )

    reply = (await provider.simple_execution(ramble).result()).unwrap()
    assert reply.stop_reason is StopReason.LENGTH
    assert reply.usage.provenance is Provenance.ESTIMATED
    # Long words are single tokens: four characters a token over-counts them; clamped.
    assert agtl.estimate_tokens(reply.text) > 48
    assert reply.usage.output_tokens == 48


async def test_an_output_budget_stops_a_remote_call_mid_stream(provider: OpenAIProvider) -> None:
    async def story(session: Session) -> agtl.TextResult:
        return await session.generate_text(prompt="Write a long story about a dragon.")

    result = await provider.simple_execution(
        story, limits=agtl.UsageLimits(max_output_tokens=10)
    ).result()
    assert result.status is Status.CANCELED
    assert result.cancel is not None
    assert result.cancel.source is agtl.CancelSource.LIMIT
    assert "(estimated)" in (result.cancel.reason or "")
    assert result.partial is not None
    assert 40 < len(result.partial.text) <= 60  # about ten tokens' worth, kept
    [call] = result.summary.llm_calls
    assert call.stop_reason is StopReason.CANCELLED
    assert call.usage.output_tokens is not None
    assert call.usage.output_tokens <= 15


async def test_concurrent_calls_to_the_test_server_queue_and_all_finish(
    provider: OpenAIProvider,
) -> None:
    results: list[agtl.Result[agtl.TextResult]] = []

    async def one() -> None:
        results.append(await provider.simple_execution(ask).result())

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(one)
    assert [r.status for r in results] == [Status.SUCCEEDED] * 3
    assert {r.unwrap().text for r in results} == {"The capital of France is Paris."}


async def test_a_wrong_base_path_names_the_url_and_the_likely_fix(server_url: str) -> None:
    root = server_url.removesuffix("/v1")
    async with OpenAIProvider(base_url=f"{root}/api").with_default_model("smollm2") as wrong:
        result = await wrong.simple_execution(ask).result()
    assert isinstance(result.error, agtl.ModelNotFoundError)
    assert f"{root}/api/chat/completions" in str(result.error)
    assert "usually .../v1" in str(result.error)


# -- configuration -----------------------------------------------------------------------------


def test_missing_key_for_the_official_endpoint_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(agtl.InvalidArgumentError, match="OPENAI_API_KEY") as info:
        OpenAIProvider()
    assert info.value.argument == "api_key"
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    provider = OpenAIProvider()
    assert SECRET not in repr(provider)
    assert SECRET not in repr(provider.with_default_model("gpt-4o"))


# -- the hostile server ------------------------------------------------------------------------


async def run(provider: OpenAIProvider, model: str, **call: Any) -> agtl.Result[str]:
    async def fn(session: Session) -> str:
        return (await session.generate_text(prompt="hi", model=model, **call)).text

    async with provider:
        return await provider.simple_execution(fn).result()


async def test_rate_limit_is_retried_after_the_hint(hostile: HostileServer) -> None:
    started = trio.current_time()
    result = await run(hostile_provider(hostile), "rate-limited")
    assert result.unwrap() == "Hello there!"
    assert trio.current_time() - started >= 0.2
    attempts = result.summary.llm_calls[0].details["attempts"]
    assert attempts == [
        {"attempt": 1, "error": "RateLimitError", "status": 429, "retry_after": 0.2},
        {"attempt": 2, "ok": True},
    ]
    assert hostile.requests["rate-limited"] == 2


async def test_server_errors_are_retried_then_fail(hostile: HostileServer) -> None:
    result = await run(hostile_provider(hostile, max_retries=1), "server-error")
    assert result.status is Status.FAILED
    assert isinstance(result.error, agtl.ServerError)
    assert result.error.is_retryable
    assert result.error.status_code == 500
    assert hostile.requests["server-error"] == 2
    call = result.summary.llm_calls[0]
    assert call.stop_reason is StopReason.ERROR
    assert [a["status"] for a in call.details["attempts"]] == [500, 500]  # type: ignore[attr-defined]
    assert call.usage == agtl.Usage(0, 0, provenance=Provenance.COUNTED)


async def test_unauthorized_is_not_retried_and_never_shows_the_key(hostile: HostileServer) -> None:
    with capture_logs() as logs:
        result = await run(hostile_provider(hostile), "unauthorized")
    assert isinstance(result.error, agtl.AuthenticationError)
    assert not result.error.is_retryable
    assert hostile.requests["unauthorized"] == 1
    assert "***" in str(result.error)
    everything = json.dumps(logs, default=repr) + str(result.error) + repr(result)
    everything += json.dumps(result.summary.to_dict()) + result.summary.format()
    assert SECRET not in everything


@pytest.mark.parametrize(
    ("model", "error", "status"),
    [
        ("bad-request", agtl.BadRequestError, 400),
        ("forbidden", agtl.PermissionDeniedError, 403),
        ("too-large", agtl.BadRequestError, 413),
        ("unprocessable", agtl.BadRequestError, 422),
    ],
)
async def test_refusals_map_to_their_typed_error_and_are_not_retried(
    hostile: HostileServer, model: str, error: type[agtl.ProviderError], status: int
) -> None:
    result = await run(hostile_provider(hostile, max_retries=2), model)
    assert result.status is Status.FAILED
    assert type(result.error) is error, result.error
    assert result.error.status_code == status
    assert not result.error.is_retryable
    assert hostile.requests[model] == 1  # a refusal is final: never sent again
    assert REFUSALS[model][1] in str(result.error)  # the server's own words
    assert hostile.base_url.rstrip("/") in str(result.error)  # and which server said them
    assert result.summary.llm_calls[0].stop_reason is StopReason.ERROR


@pytest.mark.parametrize("model", ["context-400", "context-413"])
async def test_a_context_length_refusal_is_a_context_length_error(
    hostile: HostileServer, model: str
) -> None:
    result = await run(hostile_provider(hostile, max_retries=2), model)
    assert result.status is Status.FAILED
    assert isinstance(result.error, agtl.ContextLengthError), result.error
    assert hostile.requests[model] == 1
    message = str(result.error)
    assert "maximum context length" in message
    assert "shorten the history" in message  # what to do about it
    assert hostile.base_url.rstrip("/") in message


async def test_a_server_that_never_answers_times_out_typed(hostile: HostileServer) -> None:
    provider = hostile_provider(hostile, timeout=0.3, max_retries=1)
    with trio.fail_after(30):
        result = await run(provider, "no-headers")
    assert result.status is Status.FAILED
    assert isinstance(result.error, agtl.ProviderTimeoutError), result.error
    assert result.error.is_retryable
    assert hostile.requests["no-headers"] == 2  # timed out before the first byte: retried once
    assert hostile.base_url.rstrip("/") in str(result.error)
    assert SECRET not in str(result.error)


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("cut", agtl.ProviderConnectionError),
        ("malformed", agtl.ProviderConnectionError),
        ("no-finish", agtl.IncompleteStreamError),
    ],
)
async def test_broken_streams_fail_with_partial_output(
    hostile: HostileServer, model: str, error: type[Exception]
) -> None:
    result = await run(hostile_provider(hostile), model, timeout=10)
    assert result.status is Status.FAILED
    assert isinstance(result.error, error)
    assert hostile.base_url.rstrip("/") in str(result.error)  # the error says which server
    if model == "no-finish":
        assert "context window" in str(result.error)  # the likely cause on llama.cpp
    assert result.partial is not None
    assert result.partial.text.startswith("Hello there")
    assert hostile.requests[model] == 1  # nothing is retried after the first byte
    call = result.summary.llm_calls[0]
    assert call.stop_reason is StopReason.ERROR
    assert call.usage.provenance is Provenance.ESTIMATED


async def test_a_stall_after_the_first_chunk_times_out(hostile: HostileServer) -> None:
    result = await run(hostile_provider(hostile), "stall", stall_timeout=0.3)
    assert isinstance(result.error, agtl.StallTimeoutError)
    assert result.partial is not None
    assert result.partial.text == "Hello there"


async def test_an_endless_body_is_cancelled_and_the_connection_closed(
    hostile: HostileServer,
) -> None:
    provider = hostile_provider(hostile)

    async def fn(session: Session) -> str:
        return (await session.generate_text(prompt="hi", model="endless")).text

    async with provider:
        result = await provider.simple_execution(fn, timeout=0.5).result()
    assert result.status is Status.CANCELED
    assert result.cancel is not None
    assert result.cancel.source is agtl.CancelSource.TIMEOUT
    assert result.partial is not None
    assert result.partial.text.startswith("tick tick")
    with trio.fail_after(5):
        await hostile.wait_idle()  # the server sees the client hang up


async def test_connection_refused_is_retryable_and_counted() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    provider = OpenAIProvider(base_url=url, max_retries=1)
    result = await run(provider, "any")
    assert isinstance(result.error, agtl.ProviderConnectionError)
    assert result.error.is_retryable
    assert f"connection to {url} failed" in str(result.error)
    assert "is the server running there?" in str(result.error)
    attempts = result.summary.llm_calls[0].details["attempts"]
    assert [a["error"] for a in attempts] == ["ProviderConnectionError"] * 2  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _no_ambient_key(monkeypatch: pytest.MonkeyPatch) -> None:
    if "OPENAI_API_KEY" in os.environ:
        monkeypatch.delenv("OPENAI_API_KEY")


async def test_telemetry_never_holds_the_key_even_with_content_captured(server_url: str) -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    agtl.otel.instrument(tracer_provider, capture_content=True)
    try:
        keyed_provider = OpenAIProvider(api_key=SECRET, base_url=server_url)
        async with keyed_provider.with_default_model("smollm2").with_default_options(
            temperature=0
        ) as keyed:
            result = await keyed.simple_execution(ask).result()
    finally:
        agtl.otel.uninstrument()
    assert result.status is Status.SUCCEEDED
    spans = exporter.get_finished_spans()
    chat = next(s for s in spans if s.name == "chat smollm2")
    assert (chat.attributes or {})["gen_ai.provider.name"] == "openai"
    assert (chat.attributes or {})["agtl.usage.provenance"] == "estimated"
    assert "Paris" in str((chat.attributes or {})["gen_ai.output.messages"])
    everything = json.dumps([json.loads(s.to_json()) for s in spans])
    assert SECRET not in everything
