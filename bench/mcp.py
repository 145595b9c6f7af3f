"""MCP benchmarks, against the test suite's MCP server over stdio, in this process.

* per-call cost of an MCP tool through agtl vs the same call on the raw ``mcp`` client session,
  interleaved: the agtl side is what the tool runner does with an MCP tool (the argument check
  against the server's schema, then the call with its progress hook and result conversion;
  the runner's own cost is ``tools-overhead``'s). Target <= 1.1x;
* cancel latency of a running MCP call: cancel() once the server reported progress, to
  result() returning, each sample checked (canceled, the tool call recorded ``cancelled``).
  Target: p99 within a constant 20 ms.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio

from agtl import Session, Status, ToolCallRequest, ToolCallStatus
from agtl.mcp import MCPServer
from agtl.testing import Reply, ScriptedProvider
from bench._harness import CancelSamples, Comparison, abba

ROOT = Path(__file__).resolve().parent.parent
CANCEL_BUDGET_MS = 20.0


async def _run_all(quick: bool, only: set[str] | None) -> list[Comparison]:
    server = MCPServer.stdio(sys.executable, ["-m", "tests.mcp.server"], cwd=ROOT)
    results = []
    async with server:
        if only is None or "mcp-call" in only:
            results.append(await _call_cost(server, quick=quick))
        if only is None or "mcp-cancel" in only:
            results.append(await _cancel_latency(server, quick=quick))
    return results


async def _call_cost(server: MCPServer, *, quick: bool) -> Comparison:
    tools = await server.tools()
    add = next(t for t in tools if t.name == "add")
    session = server._live()
    rounds, per_round = (4, 20) if quick else (10, 100)

    async def through_agtl() -> float:
        # What the tool runner does with an MCP tool: check the model's arguments against the
        # server's schema, then call it (progress hook, request, result conversion). The
        # runner's own cost is the tools-overhead benchmark's.
        start = time.perf_counter()
        for _ in range(per_round):
            arguments = add.validate('{"a": 1, "b": 2}')
            assert await add.function(None, **arguments) == 3
        return (time.perf_counter() - start) / per_round

    async def raw() -> float:
        start = time.perf_counter()
        for _ in range(per_round):
            answer = await session.call_tool("add", {"a": 1, "b": 2})
            assert answer.structured_content == {"result": 3}
        return (time.perf_counter() - start) / per_round

    await raw()  # warm both paths
    await through_agtl()
    samples: dict[int, list[float]] = {0: [], 1: []}
    for side in abba(rounds, 0, 1):
        samples[side].append(await through_agtl() if side == 0 else await raw())
    candidate, baseline = statistics.median(samples[0]), statistics.median(samples[1])
    ratio = candidate / baseline
    return Comparison(
        key="mcp-call",
        name="an MCP tool call through its agtl Tool (check + call) vs the raw session",
        unit="us/call",
        candidate=candidate * 1e6,
        baseline=baseline * 1e6,
        ratio=ratio,
        target="<= 1.1x",
        passed=ratio <= 1.1,
        detail={"rounds": rounds},
    )


async def _cancel_latency(server: MCPServer, *, quick: bool) -> Comparison:
    samples = CancelSamples()
    for _ in range(10 if quick else 50):
        latency, problem = await _one_cancel(server)
        samples.add(latency, problem)
    return samples.figure(
        key="mcp-cancel",
        name="cancel latency of a running MCP tool call (stdio), p99",
        budget_ms=CANCEL_BUDGET_MS,
        baseline_kind="constant",
    )


async def _one_cancel(server: MCPServer) -> tuple[float, str | None]:
    """Cancel an execution once its MCP tool reported progress: (latency, problem)."""
    reporting = trio.Event()
    tools = await server.tools(on_progress=lambda *args: reporting.set())
    provider = ScriptedProvider(
        Reply(tool_calls=[ToolCallRequest("c1", "slow", '{"seconds": 30}')]), "never"
    )

    async def run(session: Session) -> str:
        return (await session.generate_text(prompt="go", tools=tools)).text

    execution = provider.simple_execution(run)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(execution.result)
        with trio.fail_after(30):
            await reporting.wait()
        start = time.perf_counter()
        execution.cancel("bench")
        result: Any = await execution.result()
        latency = time.perf_counter() - start
    if result.status is not Status.CANCELED:
        return latency, f"ended {result.status.value}"
    if [c.status for c in result.summary.tool_calls] != [ToolCallStatus.CANCELLED]:
        return latency, "the tool call was not recorded cancelled"
    return latency, None


async def run_all(*, quick: bool, only: set[str] | None = None) -> list[Comparison]:
    return await _run_all(quick, only)
