"""A full multi-turn chat on the real bundled model, with turn 2 stopped mid-reply."""

from __future__ import annotations

from pathlib import Path

import trio

import agtl
from agtl import CancelMarker, Conversation, Session, Status
from agtl_llamacpp import LlamaCppProvider
from tests.waiting import wait_for

SYSTEM = "You are a helpful assistant."


async def test_turn_two_stopped_turn_three_answers_in_context(tmp_path: Path) -> None:
    conversation = Conversation(system=SYSTEM)
    async with LlamaCppProvider(n_ctx=2048, cache_dir=tmp_path).with_default_options(
        temperature=0
    ) as provider:

        async def turn(session: Session, prompt: str) -> agtl.TextResult:
            return await session.generate_text(
                conversation=conversation, prompt=prompt, cache_key="chat", max_tokens=200
            )

        first = await provider.simple_execution(
            lambda s: turn(s, "What is the capital of France?")
        ).result()
        assert first.unwrap().text == "The capital of France is Paris."

        seen: list[str] = []
        enough = trio.Event()

        async def stopped(session: Session) -> None:
            async with session.stream_text(
                conversation=conversation,
                prompt="Write a long essay about the sea.",
                cache_key="chat",
            ) as stream:
                async for delta in stream:
                    seen.append(delta)
                    if len(seen) == 12:
                        enough.set()

        async with provider.simple_execution(stopped) as execution:
            await wait_for(enough, "twelve deltas of the reply")
            execution.cancel("user pressed stop")
        assert execution.outcome is not None
        assert execution.outcome.status is Status.CANCELED

        kinds = ["marker" if isinstance(i, CancelMarker) else i.role.value for i in conversation]
        assert kinds == ["system", "user", "assistant", "user", "assistant", "marker"]
        partial = conversation.entries[-1]
        assert partial.partial
        assert partial.content == "".join(seen).lstrip()  # what the user saw is what is kept

        third = await provider.simple_execution(
            lambda s: turn(s, "What is the capital of Italy?")
        ).result()

    reply = third.unwrap()
    assert "Rome" in reply.text
    sent = [m.content for m in conversation.to_model_messages()]
    assert sent[:6] == [
        SYSTEM,
        "What is the capital of France?",
        "The capital of France is Paris.",
        "Write a long essay about the sea.",
        partial.content,
        "What is the capital of Italy?",
    ]
    # The next turn's prompt starts with the history plus the kept partial, and the KV cache
    # reuses it: everything up to the partial reply was already in the context.
    call = third.summary.llm_calls[0]
    assert call.usage.cached_input_tokens is not None
    assert call.usage.input_tokens is not None
    assert call.usage.cached_input_tokens > call.usage.input_tokens - 40
    # The stopped turn was never committed to disk; turns 1 and 3 were.
    assert call.details["kv_committed_generation"] == 2
