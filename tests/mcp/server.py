"""The MCP server the tests use, written with the SDK's own server API.

Run over stdio (``python -m tests.mcp.server``) or streamable HTTP (``... --http PORT``). What
it sees is appended to the file named by ``$MCP_MARKS``, one line each, so that a test can
check what happened on the server's side: a cancellation reaching a tool, its cleanup running.
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer

app = MCPServer("agtl-tests")


def mark(line: str) -> None:
    path = os.environ.get("MCP_MARKS")
    if path:
        with open(path, "a", encoding="utf-8") as marks:
            marks.write(line + "\n")


@app.tool()
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@app.tool()
async def get_weather(city: str) -> str:
    """Current weather of a city."""
    return f"sunny and 21 degrees in {city}"


@app.tool()
async def slow(seconds: float, ctx: Context) -> str:
    """Wait, reporting progress every 50 ms; a cancel runs its cleanup."""
    mark(f"slow started {seconds}")
    steps = max(1, int(seconds / 0.05))
    try:
        for step in range(steps):
            await ctx.report_progress(step, steps, f"step {step}")
            await anyio.sleep(0.05)
    except anyio.get_cancelled_exc_class():
        mark("slow cancelled")
        raise
    finally:
        mark("slow cleanup")
    return f"waited {seconds}s"


@app.tool()
async def fails(reason: str) -> str:
    """Always raise."""
    raise ValueError(f"it broke: {reason}")


@app.tool()
async def crash() -> str:
    """Kill the server process mid-call."""
    mark("crashing")
    os._exit(3)


@app.tool()
async def has_secret() -> bool:
    """Whether the MCP_SECRET environment variable reached the server."""
    return bool(os.environ.get("MCP_SECRET"))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        app.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        app.run()
