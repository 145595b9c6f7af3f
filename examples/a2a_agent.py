"""A workflow as an A2A agent, on the bundled model:

    agtl a2a-serve examples/a2a_agent.py:answer --port 9999

Any A2A client finds the agent card at http://127.0.0.1:9999/.well-known/agent-card.json and
sends it messages. Each message is a task: the reply streams as chunks of the ``reply``
artifact, and the whole answer is the ``value`` artifact. ``tasks/cancel`` stops the model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import agtl

SYSTEM = "You are a helpful assistant."


async def answer(session: agtl.Session, question: str) -> AsyncIterator[agtl.Event]:
    """Answer a question, streaming the reply."""
    async with session.stream_text(
        prompt=question, system=SYSTEM, max_tokens=400, temperature=0
    ) as reply:
        async for piece in reply:
            yield session.emit("text", piece)
    yield await session.done(reply.text)
