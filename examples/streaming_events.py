"""A streaming workflow: yield progress events, finish with done(), read them live."""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio

import agtl
from agtl.testing import Reply, ScriptedProvider


async def research(session: agtl.Session) -> AsyncIterator[agtl.Event]:
    yield session.emit("status", "drafting")
    async with session.stream_text(prompt="Summarise structured concurrency") as stream:
        async for delta in stream:
            yield session.emit("chunk", delta)
    session.record_tool_call("word_count", {"text": "..."}, len(stream.text.split()))
    yield await session.done(stream.text)


async def main() -> agtl.Result[str]:
    provider = ScriptedProvider(
        Reply("Tasks live inside nurseries and never outlive them.", delay=0.02)
    )
    async with provider.streaming_execution(research) as execution:
        async for event in execution.stream():
            if event.type == "chunk":
                print(event.data, end="", flush=True)
            else:
                print(f"\n[{event.metrics.seq}] {event.type} at +{event.metrics.elapsed:.3f}s")
        result = await execution.result()
    print(result.summary.format())
    return result


if __name__ == "__main__":
    trio.run(main)
