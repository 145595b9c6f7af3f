"""Workflows `agtl mcp-serve` offers in the tests, on a scripted provider."""

from __future__ import annotations

from collections.abc import AsyncIterator

import agtl
from agtl.testing import Reply, ScriptedProvider


def _reply(request: agtl.GenerationRequest) -> Reply:
    prompt = request.messages[-1].content or ""
    if prompt.startswith("slow"):
        return Reply(["word "] * 2000, delay=0.01)
    return Reply(["The ", "capital ", "is ", "Paris."], delay=0.01)


#: `agtl mcp-serve` uses a served file's own provider.
agtl_provider = ScriptedProvider(respond=_reply)


async def answer(session: agtl.Session, question: str) -> str:
    """Answer a question in one sentence.

    Args:
        question: What to answer.
    """
    return (await session.generate_text(prompt=question)).text


async def story(session: agtl.Session, topic: str, pieces: int = 5) -> AsyncIterator[agtl.Event]:
    """Tell a story about a topic, piece by piece (each piece a progress notification)."""
    async with session.stream_text(prompt=f"slow {topic}") as reply:
        async for n, piece in _numbered(reply):
            yield session.emit("text", piece)
            if n + 1 >= pieces and pieces > 0 and topic != "forever":
                break
    yield await session.done(reply.text)


async def _numbered(reply: agtl.TextStream) -> AsyncIterator[tuple[int, str]]:
    n = 0
    async for piece in reply:
        yield n, piece
        n += 1
