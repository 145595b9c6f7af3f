"""`agtl mcp-serve`: workflows as MCP tools, called by the MCP SDK's own client (stdio and
streamable HTTP) and by agtl's MCPServer (agtl calling agtl: a cancel crosses two processes
and stops the model)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import TextContent

import agtl
from agtl.mcp import MCPServer
from agtl.reporting import JsonlSink
from agtl.testing import Reply, ScriptedProvider
from tests.local import free_port, listening_agtl
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent.parent
FLOWS = "tests/mcp/flows.py"
DEADLINE = 60


def _text(result: Any) -> str:
    [content] = result.content
    assert isinstance(content, TextContent)
    return content.text


def _stdio() -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "agtl.cli", "mcp-serve", f"{FLOWS}:answer", f"{FLOWS}:story", "-q"],
        cwd=str(ROOT),
    )


async def test_the_sdks_client_lists_and_calls_the_workflows_over_stdio() -> None:
    reports: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, message))

    with trio.fail_after(DEADLINE):
        async with stdio_client(_stdio()) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            listed = await client.list_tools()
            tools = {tool.name: tool for tool in listed.tools}
            assert set(tools) == {"answer", "story"}
            schema = tools["answer"].input_schema
            assert schema["required"] == ["question"]
            assert schema["properties"]["question"]["type"] == "string"
            assert (tools["answer"].description or "").startswith("Answer a question in one")
            result = await client.call_tool("answer", {"question": "capital of France?"})
            assert not result.is_error
            assert _text(result) == "The capital is Paris."
            summary = result.structured_content["summary"]
            assert summary["status"] == "succeeded"
            assert summary["output_tokens"] == 4
            streamed = await client.call_tool(
                "story", {"topic": "dragons", "pieces": 3}, progress_callback=on_progress
            )
            assert not streamed.is_error
            assert [message for _, message in reports] == ["word ", "word ", "word "]
            bad = await client.call_tool("answer", {"question": 3})
            assert bad.is_error


@pytest.fixture
def http_server() -> Iterator[int]:
    port = free_port()
    with listening_agtl(
        "mcp-serve", f"{FLOWS}:answer", f"{FLOWS}:story", "--http", str(port), "-q"
    ):
        yield port


async def test_the_sdks_client_over_streamable_http(http_server: int) -> None:
    with trio.fail_after(DEADLINE):
        url = f"http://127.0.0.1:{http_server}/mcp"
        async with (
            streamable_http_client(url) as (read, write, *_),
            ClientSession(read, write) as client,
        ):
            await client.initialize()
            result = await client.call_tool("answer", {"question": "capital?"})
            assert _text(result) == "The capital is Paris."


async def test_agtl_calling_agtl_a_cancel_crosses_both_processes(tmp_path: Path) -> None:
    summaries = tmp_path / "served.jsonl"
    server = MCPServer.stdio(
        sys.executable,
        ["-m", "agtl.cli", "mcp-serve", f"{FLOWS}:story", "-q", "--log-summaries", str(summaries)],
        cwd=ROOT,
    )
    started = trio.Event()

    def noted(
        session: Any, tool: str, value: float, total: float | None, message: str | None
    ) -> None:
        started.set()

    async with server:
        [story] = await server.tools(on_progress=noted)
        provider = ScriptedProvider(
            Reply(
                tool_calls=[agtl.ToolCallRequest("c1", "story", {"topic": "forever", "pieces": 0})]
            ),
            "never",
        )

        async def run(session: agtl.Session) -> str:
            return (await session.generate_text(prompt="go", tools=[story])).text

        execution = provider.simple_execution(run)
        async with execution:
            with trio.fail_after(DEADLINE):
                await started.wait()
            execution.cancel("the user left")
        result = await execution.result()
    assert result.status is agtl.Status.CANCELED
    [call] = result.summary.tool_calls
    assert call.status is agtl.ToolCallStatus.CANCELLED
    # The served side: its execution was cancelled by the MCP client, and its model stopped.
    await wait_until(
        lambda: summaries.exists() and bool(summaries.read_text().strip()),
        "the served execution's record",
    )
    record = JsonlSink.read(summaries)[0][0]
    assert record["status"] == "canceled"
    assert record["cancel"]["source"] == "signal"
    assert record["cancel"]["reason"].startswith("cancelled by the MCP client")
    [served_call] = record["summary"]["llm_calls"]
    assert served_call["stop_reason"] == "cancelled"
    assert served_call["usage"]["output_tokens"] < 2000
