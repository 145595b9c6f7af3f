"""Workflows to serve over HTTP: `agtl serve examples/serve_app.py:research`.

POST /executions with {"input": {"question": "..."}} starts it; GET /executions/ID/events
streams its events as server-sent events; POST /executions/ID/cancel stops it. The chat page
at / talks to the same server. See guides/serving.md.

`agtl serve examples/serve_app.py:chat_model` serves ``chat_model`` to OpenAI clients as the
model "chat_model": POST /v1/chat/completions, streamed or not.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import agtl


async def research(session: agtl.Session, input: Any) -> AsyncIterator[agtl.Event]:
    question = input.get("question") if isinstance(input, dict) else None
    if not isinstance(question, str) or not question.strip():
        yield await session.fail('the input must be {"question": "..."}')
        return
    yield session.emit("status", "answering")
    async with session.stream_text(prompt=question, max_tokens=200, temperature=0) as reply:
        async for piece in reply:
            yield session.emit("text", piece)
    yield await session.done(reply.text)


async def chat_model(session: agtl.Session, input: Any) -> AsyncIterator[agtl.Event]:
    """An OpenAI chat model: the request's messages go to the model, its reply streams back
    (``input`` is ``{"model", "messages", "options"}``; see guides/serving.md)."""
    options = {
        key: value
        for key, value in input["options"].items()
        if key in ("temperature", "max_tokens", "top_p", "stop", "seed")
    }
    async with session.stream_text(messages=input["messages"], **options) as reply:
        async for piece in reply:
            yield session.emit("text", piece)
    yield await session.done(reply.text)
