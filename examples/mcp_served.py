"""Workflows as the tools of an MCP server, on the bundled model:

    agtl mcp-serve examples/mcp_served.py:answer examples/mcp_served.py:story

Any MCP client (Claude Desktop, an IDE, the MCP SDK, `agtl.mcp.MCPServer`) can list and call
them. ``answer`` returns its reply. ``story`` streams: each piece reaches the client as a
progress notification. A client that cancels its call cancels the execution, and the model
stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import agtl

SYSTEM = "You are a helpful assistant."


async def answer(session: agtl.Session, question: str) -> str:
    """Answer a question briefly.

    Args:
        question: The question.
    """
    reply = await session.generate_text(
        prompt=question, system=SYSTEM, max_tokens=64, temperature=0
    )
    return reply.text


async def story(session: agtl.Session, topic: str) -> AsyncIterator[agtl.Event]:
    """Tell a long story about a topic, piece by piece.

    Args:
        topic: What the story is about.
    """
    async with session.stream_text(
        prompt=f"Write a long story about {topic}.", system=SYSTEM, max_tokens=400
    ) as reply:
        async for piece in reply:
            yield session.emit("text", piece)
    yield await session.done(reply.text)
