"""Tools from an MCP server, on the bundled model: ``python examples/mcp_agent.py``.

The server is the one agtl's tests use (``tests/mcp/server.py``, run over stdio). The model
calls its ``get_weather`` tool; then a second execution asks for the server's slow tool and is
stopped by a cancel signal as soon as the server reports the tool under way (its first
progress notification): the cancel reaches the server as the protocol's cancellation, and
the call is recorded ``cancelled``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

import agtl
from agtl.mcp import MCPServer
from agtl_llamacpp import LlamaCppProvider

ROOT = Path(__file__).resolve().parent.parent


async def main() -> tuple[agtl.Result[str], agtl.Result[str]]:
    server = MCPServer.stdio(sys.executable, ["-m", "tests.mcp.server"], cwd=ROOT)
    async with server, LlamaCppProvider(n_ctx=2048) as model:
        tools = await server.tools(timeout=30)

        async def weather(session: agtl.Session) -> str:
            reply = await session.generate_text(
                prompt="What is the weather in Paris?",
                tools=tools,
                tool_choice="get_weather",
                max_tokens=48,
                temperature=0,
            )
            return reply.text

        stop = agtl.CancelSignal()

        def under_way(session: agtl.Session, tool: str, *progress: object) -> None:
            stop.cancel(f"{tool} is under way; stopping it")

        slow_tools = await server.tools(timeout=30, on_progress=under_way)

        async def wait_long(session: agtl.Session) -> str:
            reply = await session.generate_text(
                prompt="Wait for 20 seconds.", tools=slow_tools, tool_choice="slow", temperature=0
            )
            return reply.text

        answered = await model.simple_execution(weather)
        # The timeout is only a backstop: the signal stops it once the tool runs.
        stopped = await model.simple_execution(wait_long, signal=stop, timeout=120)
    for label, result in (("weather", answered), ("slow tool", stopped)):
        calls = ", ".join(f"{c.name}: {c.status.value}" for c in result.summary.tool_calls)
        print(f"{label}: {result.status.value} ({calls}) {result.value or ''}")
    return answered, stopped


if __name__ == "__main__":
    trio.run(main)
