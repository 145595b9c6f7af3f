"""The protocols `agtl serve` speaks besides its own: OpenAI chat completions.

* protocols-chunks: text pieces per second to one streaming client through
  ``POST /v1/chat/completions`` (``chat.completion.chunk`` events) against the same workflow's
  events through agtl's own API (``POST /executions`` and its event stream), on the scripted
  model, ABBA. Both are JSON over server-sent events on loopback; the ratio shows what the
  OpenAI framing costs. Target: >= 0.8x;
* protocols-stop-openai: on the bundled model, a chat completions client that closes its
  stream after five pieces, to the served model call's end (wall clock, one machine; the end
  read from the execution's summary). A sample counts only if the execution ended canceled
  with "client disconnected" and its call stopped ``cancelled`` before its max_tokens.
  Target: p99 within one raw llama-cpp-python decode step measured in this run + 20 ms;
* protocols-stop-mcp: the same over MCP: ``agtl mcp-serve`` on the bundled model in another
  process, called through ``agtl.mcp.MCPServer``; the calling execution is cancelled after
  five progress notifications (the SDK sends ``notifications/cancelled``), to the served
  model call's end, read from the server's summary file. A sample counts only if the served
  execution ended canceled by the MCP client (source ``signal``) and its call stopped before
  its max_tokens. Same target;
* protocols-stop-a2a: the same over A2A: ``agtl a2a-serve`` on the bundled model in another
  process, the A2A SDK's client streaming a task, ``tasks/cancel`` after five artifact
  chunks, to the served model call's end. A sample counts only if the served execution ended
  canceled with the protocol's reason and its call stopped before its max_tokens. Same
  target.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio
from a2a.client import create_client
from a2a.helpers.proto_helpers import new_text_message
from a2a.types.a2a_pb2 import CancelTaskRequest, Role, SendMessageRequest

from agtl import Event, Session, ToolCallRequest
from agtl.mcp import MCPServer
from agtl.reporting import JsonlSink
from agtl.testing import Reply, ScriptedProvider
from agtl_llamacpp import LlamaCppProvider
from bench._harness import CancelSamples, Comparison, abba
from bench.local import decode_step
from bench.serve import _Client, _free_port, _serving

ROOT = Path(__file__).resolve().parent.parent
CHUNKS_TARGET = 0.8
MARGIN_S = 0.020


async def chat(session: Session, input: Any) -> AsyncIterator[Event]:
    """The served model: the messages to the provider, its reply streamed."""
    options = {k: v for k, v in input.get("options", {}).items() if k == "max_tokens"}
    async with session.stream_text(messages=input["messages"], **options) as reply:
        async for piece in reply:
            yield session.emit("text", piece)
    yield await session.done(reply.text)


def _stream_completion(
    port: int, body: dict[str, Any], stop_after: int | None
) -> tuple[int, float]:
    """Stream one completion (blocking, in a thread): (pieces read, when it was closed or done,
    on the wall clock)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    pieces = 0
    try:
        connection.request(
            "POST",
            "/v1/chat/completions",
            json.dumps({**body, "stream": True}),
            {"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        for line in response:
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                pieces += 1
                if stop_after is not None and pieces == stop_after:
                    closed = time.time()
                    connection.sock.close()  # the client goes away
                    return pieces, closed
        return pieces, time.time()
    finally:
        connection.close()


async def chunk_rate(*, quick: bool) -> Comparison:
    count = 1_000 if quick else 10_000
    provider = ScriptedProvider(respond=lambda request: Reply(["w "] * count))
    body = {"model": "chat", "messages": [{"role": "user", "content": "go"}]}

    async def run(client: _Client) -> tuple[float, float]:
        port = client.port

        async def openai_side() -> float:
            started = time.perf_counter()
            pieces, _ = await trio.to_thread.run_sync(_stream_completion, port, body, None)
            assert pieces == count, pieces
            return pieces / (time.perf_counter() - started)

        async def own_side() -> float:
            started = time.perf_counter()
            run = await trio.to_thread.run_sync(client.post, "/executions", {"input": body})
            seen = await trio.to_thread.run_sync(client.events, run["id"])
            texts = sum(1 for kind, _ in seen if kind == "text")
            assert texts == count, texts
            return texts / (time.perf_counter() - started)

        rates: dict[str, list[float]] = {"openai": [], "own": []}
        await openai_side()
        await own_side()
        for side in abba(2 if quick else 6, "openai", "own"):
            rates[side].append(await (openai_side() if side == "openai" else own_side()))
        return statistics.median(rates["openai"]), statistics.median(rates["own"])

    openai_rate, own_rate = await _serving(provider, chat, run)
    return Comparison(
        key="protocols-chunks",
        name=f"pieces/s to one streaming client: /v1/chat/completions vs agtl's own events "
        f"({count:,} pieces)",
        unit="pieces/s",
        candidate=openai_rate,
        baseline=own_rate,
        ratio=openai_rate / own_rate,
        target=f">= {CHUNKS_TARGET}x",
        passed=openai_rate / own_rate >= CHUNKS_TARGET,
    )


async def stop_latency(*, quick: bool) -> Comparison:
    provider = LlamaCppProvider(n_ctx=4096).with_default_options(temperature=0)
    try:
        step = await decode_step(provider)

        async def run(client: _Client) -> CancelSamples:
            samples = CancelSamples()
            counted: set[str] = set()
            for n in range(5 if quick else 30):
                body = {
                    "model": "chat",
                    "messages": [{"role": "user", "content": f"Write a long story, number {n}."}],
                    "max_tokens": 400,
                }
                pieces, closed = await trio.to_thread.run_sync(
                    _stream_completion, client.port, body, 5
                )
                latency, problem = await _ended(client, closed, pieces, counted)
                samples.add(latency, problem)
            return samples

        samples: CancelSamples = await _serving(provider, chat, run)
    finally:
        await provider.aclose()
    return _stop_figure(
        "protocols-stop-openai", "a chat completions client gone mid-stream", samples, step
    )


async def _ended(
    client: _Client, closed: float, pieces: int, counted: set[str]
) -> tuple[float, str | None]:
    """How long after ``closed`` the execution the client left ended its call, and why the
    sample does not count (if not). ``counted``: the executions earlier samples read."""
    if pieces < 5:
        return 0.0, "the reply ended before five pieces"
    with trio.fail_after(30):
        while True:
            listed = await trio.to_thread.run_sync(client.get, "/executions")
            new = [row["id"] for row in listed["executions"] if row["id"] not in counted]
            if new:
                break
            await trio.sleep(0.01)
    newest = new[0]
    counted.add(newest)
    record = await trio.to_thread.run_sync(client.get, f"/executions/{newest}?wait=30")
    if record["cancel"]["reason"] != "client disconnected":
        return 0.0, f"canceled by {record['cancel']}"
    summary = record["summary"]
    [call] = summary["llm_calls"]
    if call["stop_reason"] != "cancelled" or call["usage"]["output_tokens"] >= 400:
        return 0.0, "the call was not stopped mid-stream"
    started = dt.datetime.fromisoformat(summary["started_at"]).timestamp()
    return started + call["ended_at"] - closed, None


async def mcp_stop_latency(*, quick: bool) -> Comparison:
    async with LlamaCppProvider(n_ctx=2048).with_default_options(temperature=0) as local:
        step = await decode_step(local)
    samples = CancelSamples()
    with tempfile.TemporaryDirectory(prefix="agtl-bench-mcp-") as folder:
        summaries = Path(folder) / "served.jsonl"
        server = MCPServer.stdio(
            sys.executable,
            [
                "-m",
                "agtl.cli",
                "mcp-serve",
                "examples/mcp_served.py:story",
                "-q",
                "--log-summaries",
                str(summaries),
            ],
            cwd=ROOT,
        )
        async with server:
            seen = trio.Event()
            progress = [0]

            def noted(*_: Any) -> None:
                progress[0] += 1
                if progress[0] == 5:
                    seen.set()

            [story] = await server.tools(on_progress=noted)
            for n in range(5 if quick else 30):
                seen, progress[0] = trio.Event(), 0
                model = ScriptedProvider(
                    Reply(tool_calls=[ToolCallRequest("c1", "story", {"topic": f"dragon {n}"})]),
                    "never",
                )

                async def call(session: Session) -> str:
                    return (await session.generate_text(prompt="go", tools=[story])).text

                execution = model.simple_execution(call)
                async with execution:
                    with trio.fail_after(60):
                        await seen.wait()
                    cancelled = time.time()
                    execution.cancel("enough")
                await execution.result()
                samples.add(*await _served_end(summaries, n, cancelled))
    return _stop_figure("protocols-stop-mcp", "an MCP client's cancel", samples, step)


def _records(summaries: Path) -> list[dict[str, Any]]:
    return JsonlSink.read(summaries)[0] if summaries.exists() else []


async def _served_end(
    summaries: Path, index: int, cancelled: float, *, a2a: bool = False
) -> tuple[float, str | None]:
    """The ``index``-th served execution's call end after ``cancelled``, or why not."""
    with trio.fail_after(30):
        while True:
            records = await trio.to_thread.run_sync(_records, summaries)
            if len(records) > index:
                break
            await trio.sleep(0.01)
    record = records[index]
    cancel = record["cancel"] or {}
    wanted = ("handle", "A2A client") if a2a else ("signal", "MCP client")
    if cancel.get("source") != wanted[0] or wanted[1] not in (cancel.get("reason") or ""):
        return 0.0, f"not cancelled by the {wanted[1]}: {cancel}"
    summary = record["summary"]
    [served] = summary["llm_calls"]
    if served["stop_reason"] != "cancelled" or served["usage"]["output_tokens"] >= 400:
        return 0.0, "the served call was not stopped mid-stream"
    started = dt.datetime.fromisoformat(summary["started_at"]).timestamp()
    return started + served["ended_at"] - cancelled, None


async def a2a_stop_latency(*, quick: bool) -> Comparison:
    async with LlamaCppProvider(n_ctx=2048).with_default_options(temperature=0) as local:
        step = await decode_step(local)
    with tempfile.TemporaryDirectory(prefix="agtl-bench-a2a-") as folder:
        summaries = Path(folder) / "served.jsonl"
        port = _free_port()
        command = [
            *(sys.executable, "-m", "agtl.cli", "a2a-serve", "examples/a2a_agent.py:answer"),
            *("--port", str(port), "--log-summaries", str(summaries)),
        ]
        server = await trio.lowlevel.open_process(command, cwd=ROOT, stderr=subprocess.PIPE)
        try:
            assert server.stderr is not None
            said = b""
            with trio.fail_after(60):
                while b"listening on" not in said:
                    said += await server.stderr.receive_some()
            runs = 5 if quick else 30
            stamps = await trio.to_thread.run_sync(_a2a_cancels, port, runs)
            samples = CancelSamples()
            for index, cancelled in enumerate(stamps):
                samples.add(*await _served_end(summaries, index, cancelled, a2a=True))
        finally:
            server.terminate()
            with trio.move_on_after(10):
                await server.wait()
    return _stop_figure("protocols-stop-a2a", "A2A tasks/cancel", samples, step)


def _a2a_cancels(port: int, runs: int) -> list[float]:
    """In a thread, under asyncio (the SDK's): ``runs`` tasks, each cancelled after five
    artifact chunks; when each cancel was sent, on the wall clock."""

    async def go() -> list[float]:
        client = await create_client(f"http://127.0.0.1:{port}/")
        stamps = []
        try:
            for n in range(runs):
                message = new_text_message(
                    f"Write a long story about dragon number {n}.", role=Role.ROLE_USER
                )
                stream: Any = client.send_message(SendMessageRequest(message=message))
                task_id, chunks = "", 0
                async for event in stream:
                    if event.HasField("task"):
                        task_id = event.task.id
                    if event.HasField("artifact_update"):
                        chunks += 1
                        if chunks == 5:
                            break
                stamps.append(time.time())
                await client.cancel_task(CancelTaskRequest(id=task_id))
                await stream.aclose()
        finally:
            await client.close()
        return stamps

    return asyncio.run(go())


def _stop_figure(key: str, what: str, samples: CancelSamples, step: float) -> Comparison:
    """A protocol's stop latency against one raw decode step + 20 ms."""
    return samples.figure(
        key=key,
        name=f"{what} to the served model call's end, bundled model "
        "(p99 vs one raw decode step + 20 ms)",
        budget_ms=(step + MARGIN_S) * 1000,
        baseline_kind="measured",
        decode_step_ms=step * 1000,
    )


async def run_all(*, quick: bool, only: set[str] | None = None) -> list[Comparison]:
    benches = {
        "protocols-chunks": chunk_rate,
        "protocols-stop-openai": stop_latency,
        "protocols-stop-mcp": mcp_stop_latency,
        "protocols-stop-a2a": a2a_stop_latency,
    }
    return [
        await bench(quick=quick) for name, bench in benches.items() if only is None or name in only
    ]
