"""`agtl serve` benchmarks: the app on Hypercorn's trio worker, in this process, on loopback.

* events/s to one server-sent-events client (the standard library's HTTP client, in a
  thread) vs the same execution's events consumed in-process with ``execution.stream()``,
  interleaved (target >= 0.12x: every event is JSON-encoded, framed and sent through a socket,
  while in-process consumption hands over references);
* Stop latency on the bundled model, through the API: ``POST /executions/{id}/cancel`` sent
  after five text events, to the ``end`` event arriving (the execution has ended, the model
  stopped). Each sample is checked: canceled by the handle, the call stopped (``cancelled``),
  the text had started. Target: p99 within a constant 50 ms.
"""

from __future__ import annotations

import functools
import http.client
import json
import socket
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import trio

from agtl import Event, Provider, Session
from agtl.serve import create_app, serve
from agtl.testing import ScriptedProvider
from agtl_llamacpp import LlamaCppProvider
from bench._harness import CancelSamples, Comparison, abba

SYSTEM = "You are a helpful assistant."
STOP_BUDGET_MS = 50.0
#: Measured 0.15x to 0.19x in three runs on a 2-core machine (the SSE side steady near 46k
#: events/s; the in-process side, which only hands over references, moves between 235k and
#: 315k); the target sits below the lowest by that spread, so a real slowdown of the HTTP
#: path fails it and the machine's noise does not.
EVENTS_TARGET = 0.12


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Client:
    """Blocking HTTP calls (run in a thread) against the server on ``port``."""

    def __init__(self, port: int) -> None:
        self.port = port

    def post(self, path: str, body: Any) -> Any:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            return json.loads(connection.getresponse().read())
        finally:
            connection.close()

    def get(self, path: str) -> Any:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request("GET", path)
            return json.loads(connection.getresponse().read())
        finally:
            connection.close()

    def events(self, execution_id: str, on_event: Any = None) -> list[tuple[str, Any]]:
        """Read the whole stream: (type, data) per event; ``on_event`` sees each as it comes."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        seen: list[tuple[str, Any]] = []
        try:
            connection.request("GET", f"/executions/{execution_id}/events")
            response = connection.getresponse()
            kind = ""
            for line in response:
                if line.startswith(b"event: "):
                    kind = line[7:].decode().strip()
                elif line.startswith(b"data: "):
                    seen.append((kind, json.loads(line[6:])))
                    if on_event is not None:
                        on_event(len(seen), kind)
            return seen
        finally:
            connection.close()


async def _serving(provider: Provider, workflow: Any, body: Any) -> Any:
    """Run ``body(client)`` against a server of ``workflow`` on ``provider``."""
    app = create_app(workflow, provider, max_running=64, disconnect_grace=30)
    port = _free_port()
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(serve, app, host="127.0.0.1", port=port))
        try:
            return await body(_Client(port))
        finally:
            nursery.cancel_scope.cancel()


async def event_rate(*, quick: bool) -> Comparison:
    count = 2_000 if quick else 20_000
    rounds = 2 if quick else 6
    provider = ScriptedProvider()

    async def ticks(session: Session, input: Any) -> AsyncIterator[Event]:
        for n in range(int(input)):
            yield session.emit("tick", n)
        yield await session.done(int(input))

    async def in_process() -> float:
        gen = functools.partial(ticks, input=count)
        seen = 0
        start = time.perf_counter()
        async with provider.streaming_execution(lambda s: gen(s)) as execution:
            async for _ in execution.stream():
                seen += 1
        elapsed = time.perf_counter() - start
        assert seen == count + 1, seen
        return seen / elapsed

    async def over_http(client: _Client) -> float:
        start = time.perf_counter()
        started = await trio.to_thread.run_sync(client.post, "/executions", {"input": count})
        execution_id = started["id"]
        seen = await trio.to_thread.run_sync(client.events, execution_id)
        elapsed = time.perf_counter() - start
        assert [kind for kind, _ in seen[-2:]] == ["complete", "end"], seen[-2:]
        assert len(seen) == count + 2, len(seen)
        return (len(seen) - 1) / elapsed

    async def body(client: _Client) -> tuple[float, float]:
        rates: dict[int, list[float]] = {0: [], 1: []}
        await over_http(client)  # warm both paths
        await in_process()
        for side in abba(rounds, 0, 1):
            rates[side].append(await over_http(client) if side == 0 else await in_process())
        return statistics.median(rates[0]), statistics.median(rates[1])

    sse, local = await _serving(provider, ticks, body)
    ratio = sse / local
    return Comparison(
        key="serve-events",
        name=f"events/s to one SSE client vs in-process consumption ({count:,} events)",
        unit="events/s",
        candidate=sse,
        baseline=local,
        ratio=ratio,
        target=f">= {EVENTS_TARGET}x",
        passed=ratio >= EVENTS_TARGET,
        detail={"rounds": rounds},
    )


async def stop_latency(*, quick: bool) -> Comparison:
    samples = 5 if quick else 30
    provider = LlamaCppProvider(n_ctx=2048).with_default_options(temperature=0)

    async def story(session: Session, input: Any) -> AsyncIterator[Event]:
        async with session.stream_text(prompt=str(input), system=SYSTEM, max_tokens=400) as reply:
            async for piece in reply:
                yield session.emit("text", piece)
        yield await session.done(reply.text)

    async def body(client: _Client) -> CancelSamples:
        results = CancelSamples()
        for n in range(samples):
            prompt = f"Write a long story about dragon number {n}."
            started = await trio.to_thread.run_sync(client.post, "/executions", {"input": prompt})
            pressed: list[float] = []
            stop = functools.partial(_stop_after_five, client, started["id"], pressed)
            seen = await trio.to_thread.run_sync(client.events, started["id"], stop)
            ended = time.perf_counter()
            end = seen[-1][1]
            problem = None
            if not pressed:
                problem = "the reply ended before five text events"
            elif seen[-1][0] != "end" or end["status"] != "canceled":
                problem = f"not canceled: {end}"
            elif end["cancel"]["source"] != "handle":
                problem = f"canceled by {end['cancel']['source']}"
            elif not end["partial"]:
                problem = "no text before the stop"
            results.add(ended - pressed[0] if pressed else 0.0, problem)
        return results

    try:
        results: CancelSamples = await _serving(provider, story, body)
    finally:
        await provider.aclose()
    return results.figure(
        key="serve-stop",
        name="Stop latency over HTTP on the bundled model (cancel POST to the end event)",
        budget_ms=STOP_BUDGET_MS,
        baseline_kind="constant",
    )


def _stop_after_five(
    client: _Client, execution_id: str, pressed: list[float], seen: int, kind: str
) -> None:
    """Press Stop (through the API) when the fifth text event arrives."""
    if kind == "text" and seen == 5:
        pressed.append(time.perf_counter())
        client.post(f"/executions/{execution_id}/cancel", {"reason": "Stop"})


async def run_all(*, quick: bool, only: set[str] | None = None) -> list[Comparison]:
    benches = {"serve-events": event_rate, "serve-stop": stop_latency}
    return [
        await bench(quick=quick) for name, bench in benches.items() if only is None or name in only
    ]
