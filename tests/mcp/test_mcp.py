"""Tools from real MCP servers (tests/mcp/server.py) over stdio and streamable HTTP."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from structlog.testing import capture_logs

import agtl
from agtl import CancelSource, Session, Status, ToolCallRequest, ToolCallStatus
from agtl.mcp import MCPServer, MCPServerError
from agtl.testing import Reply, ScriptedProvider
from agtl_llamacpp import LlamaCppProvider
from tests.local import free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent.parent
SECRET = "mcp-secret-0123456789-DO-NOT-LEAK"
SERVER = ["-m", "tests.mcp.server"]


def children() -> set[int]:
    """The live (not zombie) child processes of this process."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.add(int(entry.name))
    return found


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    return tmp_path / "marks.txt"


def stdio_server(marks: Path, **kwargs: Any) -> MCPServer:
    env = {"MCP_MARKS": str(marks), "MCP_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    return MCPServer.stdio(sys.executable, SERVER, env=env, cwd=ROOT, **kwargs)


async def seen(marks: Path, line: str) -> None:
    def there() -> bool:
        return marks.exists() and line in marks.read_text().splitlines()

    await wait_until(there, f"the server to write {line!r}")


def calling(name: str, arguments: dict[str, Any], *then: str) -> ScriptedProvider:
    call = ToolCallRequest("call-1", name, json.dumps(arguments))
    return ScriptedProvider(Reply(tool_calls=[call]), *(then or ("Done.",)))


async def agent(provider: ScriptedProvider, tools: list[agtl.Tool], **kwargs: Any) -> Any:
    async def run(session: Session) -> str:
        return (await session.generate_text(prompt="go", tools=tools)).text

    return await provider.simple_execution(run, **kwargs)


async def test_tools_come_with_the_servers_schemas_and_run(marks: Path) -> None:
    async with stdio_server(marks) as server:
        tools = {t.name: t for t in await server.tools()}
        assert set(tools) >= {"add", "slow", "fails", "crash", "get_weather", "has_secret"}
        assert tools["add"].description == "Add two integers."
        assert tools["add"].parameters["required"] == ["a", "b"]
        result = await agent(calling("add", {"a": 2, "b": 3}), list(tools.values()))
        [call] = result.summary.tool_calls
        assert (call.status, call.result) == (ToolCallStatus.OK, 5)
        # Invalid arguments are caught with the server's schema before the server is asked.
        result = await agent(calling("add", {"a": "two"}), list(tools.values()))
        assert result.summary.tool_calls[0].status is ToolCallStatus.INVALID
        secret = await agent(calling("has_secret", {}), list(tools.values()))
        assert secret.summary.tool_calls[0].result is True  # env reached the server


async def test_a_cancel_mid_call_reaches_the_server_and_the_session_stays_usable(
    marks: Path,
) -> None:
    async with stdio_server(marks) as server:
        tools = await server.tools()
        provider = calling("slow", {"seconds": 30})
        execution = provider.simple_execution(
            lambda session: session.generate_text(prompt="go", tools=tools)
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(execution.result)
            await seen(marks, "slow started 30.0")
            execution.cancel("user pressed Stop")
        result = execution.outcome
        assert result is not None
        assert result.status is Status.CANCELED
        [call] = result.summary.tool_calls
        assert call.status is ToolCallStatus.CANCELLED
        await seen(marks, "slow cancelled")  # the notification reached the tool
        await seen(marks, "slow cleanup")  # and its cleanup ran on the server
        again = await agent(calling("add", {"a": 1, "b": 1}), tools)
        assert again.summary.tool_calls[0].result == 2


async def test_a_tool_timeout_cancels_the_request(marks: Path) -> None:
    async with stdio_server(marks) as server:
        tools = await server.tools(timeout=0.3)
        result = await agent(calling("slow", {"seconds": 30}), tools)
        assert result.status is Status.SUCCEEDED  # the model is told, and answers
        assert result.summary.tool_calls[0].status is ToolCallStatus.TIMEOUT
        await seen(marks, "slow cancelled")


async def test_progress_is_recorded_and_reported(marks: Path) -> None:
    reported: list[tuple[str, float, float | None]] = []

    def on_progress(
        session: Session, tool: str, progress: float, total: float | None, message: str | None
    ) -> None:
        reported.append((tool, progress, total))

    async with stdio_server(marks) as server:
        tools = await server.tools(on_progress=on_progress)
        result = await agent(calling("slow", {"seconds": 0.2}), tools)
    assert result.summary.tool_calls[0].result == "waited 0.2s"
    records = [r.data for r in result.summary.records if r.kind == "tool.progress"]
    assert [r["progress"] for r in records] == [0, 1, 2, 3]
    assert records[0]["total"] == 4
    assert reported == [("slow", float(n), 4.0) for n in range(4)]


async def test_progress_reaches_a_streaming_consumer_as_parts(marks: Path) -> None:
    async with stdio_server(marks) as server:
        tools = await server.tools()
        provider = calling("slow", {"seconds": 0.2})

        async def gen(session: Session) -> Any:
            async with session.stream_text(prompt="go", tools=tools) as loop:
                async for part in loop.parts():
                    yield session.emit(type(part).__name__, part)
            yield await session.done(loop.text)

        result = await provider.streaming_execution(gen)
    kinds = [e.type for e in result.events]
    assert kinds[:1] == ["ToolCallStarted"]
    assert kinds.count("ToolProgress") == 4
    assert kinds.index("ToolProgress") < kinds.index("ToolCallFinished")
    progress = [e.data for e in result.events if e.type == "ToolProgress"]
    assert [(p.name, p.progress, p.total) for p in progress] == [
        ("slow", float(n), 4.0) for n in range(4)
    ]


async def test_an_error_result_is_a_tool_error_for_the_model(marks: Path) -> None:
    async with stdio_server(marks) as server:
        tools = await server.tools()
        result = await agent(calling("fails", {"reason": "bad day"}), tools)
        [call] = result.summary.tool_calls
        assert call.status is ToolCallStatus.ERROR
        assert "fails" in (call.error or "")
        raised = await calling("fails", {"reason": "x"}).simple_execution(
            lambda session: session.generate_text(prompt="go", tools=tools, tool_errors="raise")
        )
        assert isinstance(raised.error, agtl.ToolError)


async def test_a_server_that_crashes_mid_call_fails_the_call_not_the_process(
    marks: Path,
) -> None:
    before = children()
    async with stdio_server(marks) as server:
        tools = await server.tools()
        with trio.fail_after(30):
            result = await agent(calling("crash", {}), tools)
        [call] = result.summary.tool_calls
        assert call.status is ToolCallStatus.ERROR
        assert "went away" in (call.error or "") or "closed" in (call.error or "").lower()
        with pytest.raises(MCPServerError):
            with trio.fail_after(30):
                await server.tools()
    assert children() == before


async def test_a_server_killed_with_sigkill_leaves_nothing_running(marks: Path) -> None:
    before = children()
    async with stdio_server(marks) as server:
        await server.tools()
        [pid] = children() - before
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(MCPServerError), trio.fail_after(30):
            await server.tools()
    assert children() == before


async def test_a_command_that_is_not_installed_is_a_clear_error() -> None:
    with pytest.raises(MCPServerError, match="could not be started"):
        async with MCPServer.stdio("no-such-mcp-server-command-here"):
            pass


async def test_a_server_that_never_answers_times_out_and_is_stopped() -> None:
    before = children()
    silent = MCPServer.stdio(
        sys.executable, ["-c", "import time; time.sleep(60)"], startup_timeout=1
    )
    with pytest.raises(MCPServerError, match="did not answer within 1s"):
        async with silent:
            pass
    assert children() == before


async def test_a_cancel_during_start_up_leaves_no_process() -> None:
    before = children()
    slow_start = MCPServer.stdio(sys.executable, ["-c", "import time; time.sleep(60)"])
    with trio.move_on_after(0.5) as scope:
        async with slow_start:
            pass
    assert scope.cancelled_caught
    assert children() == before


async def test_secrets_never_show(marks: Path) -> None:
    with capture_logs() as logs:
        async with stdio_server(marks) as server:
            tools = await server.tools()
            result = await agent(calling("fails", {"reason": "x"}), tools)
            text = repr(server) + json.dumps(result.summary.to_dict()) + result.summary.format()
    broken = MCPServer.stdio("no-such-command", env={"TOKEN": SECRET})
    with pytest.raises(MCPServerError) as failure:
        async with broken:
            pass
    http = MCPServer.http("http://127.0.0.1:9/mcp", headers={"Authorization": f"Bearer {SECRET}"})
    everything = text + json.dumps(logs, default=repr) + str(failure.value) + repr(http)
    assert SECRET not in everything


@pytest.fixture
def http_server(marks: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, *SERVER, "--http", str(port)],
        cwd=ROOT,
        env={**os.environ, "MCP_MARKS": str(marks)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError("the MCP HTTP server did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.kill()
        process.wait(30)


async def test_over_http_a_server_that_is_not_there_is_one_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens there
    with trio.fail_after(30), pytest.raises(MCPServerError) as failure:
        async with MCPServer.http(url, headers={"Authorization": f"Bearer {SECRET}"}):
            pass
    message = str(failure.value)
    assert message.startswith(f"MCP server at {url} failed while starting: ")
    assert "is the server running there?" in message
    assert SECRET not in message


async def _refuse_everything(stream: trio.SocketStream) -> None:
    """An HTTP server that answers every request 401, as one behind a wrong token does."""
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return
        request += chunk
    body = b'{"error": "invalid token"}'
    await stream.send_all(
        b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n"
        b"www-authenticate: Bearer\r\nconnection: close\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await stream.aclose()


async def test_over_http_a_401_says_the_credentials_were_refused() -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, _refuse_everything, 0)
        port = listeners[0].socket.getsockname()[1]
        url = f"http://127.0.0.1:{port}/mcp"
        with trio.fail_after(30), pytest.raises(MCPServerError) as failure:
            async with MCPServer.http(url, headers={"Authorization": f"Bearer {SECRET}"}):
                pass
        nursery.cancel_scope.cancel()
    message = str(failure.value)
    assert message.startswith(f"MCP server at {url} failed while starting: ")
    assert "HTTP 401: the server refused the credentials; check the headers" in message
    assert SECRET not in message


async def test_over_streamable_http_with_a_cancel(http_server: str, marks: Path) -> None:
    async with MCPServer.http(http_server, headers={"X-Api-Key": SECRET}) as server:
        tools = await server.tools()
        result = await agent(calling("add", {"a": 20, "b": 22}), tools)
        assert result.summary.tool_calls[0].result == 42
        stopped = await agent(calling("slow", {"seconds": 30}), tools, timeout=1.0)
        assert stopped.cancel is not None
        assert stopped.cancel.source is CancelSource.TIMEOUT
        assert stopped.summary.tool_calls[0].status is ToolCallStatus.CANCELLED
        await seen(marks, "slow cancelled")
        again = await agent(calling("add", {"a": 1, "b": 2}), tools)
        assert again.summary.tool_calls[0].result == 3


async def test_fifty_concurrent_executions_share_one_server_through_random_cancels(
    marks: Path,
) -> None:
    rng = random.Random(20261126)
    before = children()
    async with stdio_server(marks) as server:
        tools = await server.tools()
        outcomes: list[agtl.Result[Any]] = []

        async def one(n: int) -> None:
            if n % 2:
                provider = calling("slow", {"seconds": rng.choice([0.1, 0.3, 5.0])})
            else:
                provider = calling("add", {"a": n, "b": 1})
            timeout = rng.choice([None, 0.05, 0.2, 1.0])
            outcomes.append(await agent(provider, tools, timeout=timeout))

        async with trio.open_nursery() as nursery:
            for n in range(50):
                nursery.start_soon(one, n)
        assert len(outcomes) == 50
        statuses = {o.status for o in outcomes}
        assert statuses <= {Status.SUCCEEDED, Status.CANCELED}
        assert Status.CANCELED in statuses
        for outcome in outcomes:
            for call in outcome.summary.tool_calls:
                assert call.status in (ToolCallStatus.OK, ToolCallStatus.CANCELLED)
        dispatcher = server._live()._dispatcher  # no request is left waiting for an answer
        await wait_until(lambda: not dispatcher._pending, "every request to be settled")  # type: ignore[attr-defined]
        final = await agent(calling("add", {"a": 1, "b": 1}), tools)
        assert final.summary.tool_calls[0].result == 2
        assert len(children() - before) == 1  # one server process, however many calls
    assert children() == before


async def test_the_bundled_model_calls_an_mcp_tool(marks: Path) -> None:
    async with stdio_server(marks) as server, LlamaCppProvider(n_ctx=2048) as model:
        tools = await server.tools()

        async def weather(session: Session) -> str:
            reply = await session.generate_text(
                prompt="What is the weather in Paris?",
                tools=tools,
                tool_choice="get_weather",
                max_tokens=48,
                temperature=0,
            )
            return reply.text

        result = await model.simple_execution(weather)
    assert result.status is Status.SUCCEEDED
    [call] = result.summary.tool_calls
    assert call.name == "get_weather"
    assert call.status is ToolCallStatus.OK
    assert "sunny" in str(call.result)


async def test_mcp_tools_can_need_approval(marks: Path) -> None:
    """A server-wide rule (name and arguments) asks before a real MCP call: denied, the call
    is recorded denied; approved, the server answers."""
    async with stdio_server(marks) as server:
        tools = await server.tools(
            needs_approval=lambda name, args: name == "add" and args["a"] > 1
        )
        by_name = {t.name: t for t in tools}
        assert by_name["add"].wants_approval({"a": 2, "b": 3})
        assert not by_name["add"].wants_approval({"a": 1, "b": 3})
        assert not by_name["get_weather"].wants_approval({"city": "Paris"})

        execution = calling("add", {"a": 2, "b": 3}).simple_execution(
            lambda session: session.generate_text(prompt="go", tools=tools)
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(execution.result)
            async for request in execution.approval_requests():
                assert request.tool == "add"
                request.deny("not now")
        assert execution.outcome is not None
        [call] = execution.outcome.summary.tool_calls
        assert call.status is ToolCallStatus.DENIED
        approved = calling("add", {"a": 2, "b": 3}).simple_execution(
            lambda session: session.generate_text(prompt="go", tools=tools)
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(approved.result)
            async for request in approved.approval_requests():
                request.approve()
        assert approved.outcome is not None
        assert approved.outcome.summary.tool_calls[0].result == 5
