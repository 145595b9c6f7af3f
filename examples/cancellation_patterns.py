"""Every way to stop an execution, and what the Result says about it.

1. ``execution.cancel()`` on the handle      4. a UI-like callback on another thread
2. an external ``CancelSignal``              5. racing two executions
3. a ``timeout=``                            6. streaming until enough, then cancel
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import trio

import agtl
from agtl.testing import Reply, ScriptedProvider

STORY = Reply("Once upon a time " * 40, delay=0.01)


def provider() -> ScriptedProvider:
    return ScriptedProvider(respond=lambda request: STORY)


async def story(session: agtl.Session) -> str:
    return (await session.generate_text(prompt="Write a long story")).text


def story_telling(begun: trio.Event) -> Callable[[agtl.Session], Awaitable[str]]:
    """The story, streamed, setting ``begun`` once its first words arrived."""

    async def tell(session: agtl.Session) -> str:
        async with session.stream_text(prompt="Write a long story") as stream:
            async for _ in stream:
                begun.set()
        return stream.text

    return tell


async def via_handle() -> agtl.Result[str]:
    begun = trio.Event()
    async with provider().simple_execution(story_telling(begun)) as execution:
        await begun.wait()
        execution.cancel("user pressed stop")
        return await execution.result()


async def via_signal() -> agtl.Result[str]:
    signal = agtl.CancelSignal()
    begun = trio.Event()
    async with provider().simple_execution(story_telling(begun), signal=signal) as execution:
        await begun.wait()
        signal.cancel("page closed")
        return await execution.result()


async def via_timeout() -> agtl.Result[str]:
    # Combined: the handle, a signal and a timeout; whichever fires first is reported.
    return (
        await provider().simple_execution(story, signal=agtl.CancelSignal(), timeout=0.05).result()
    )


async def via_ui_thread() -> agtl.Result[str]:
    begun = trio.Event()
    async with provider().simple_execution(story_telling(begun)) as execution:
        await begun.wait()
        # cancel() is safe from any thread, e.g. a GUI's button callback.
        await trio.to_thread.run_sync(execution.cancel, "clicked Cancel")
        return await execution.result()


async def race_two() -> agtl.Result[str]:
    fast = ScriptedProvider(Reply("fast answer", delay=0.01))
    slow = ScriptedProvider(Reply("slow answer", delay=0.5))
    return await agtl.race(fast.simple_execution(story), slow.simple_execution(story))


async def stream_until_enough() -> str:
    async def essay(session: agtl.Session) -> AsyncIterator[agtl.Event]:
        async with session.stream_text(prompt="Write a very long essay") as stream:
            async for delta in stream:
                yield session.emit("chunk", delta)
        yield await session.done(stream.text)

    collected = ""
    async with provider().streaming_execution(essay) as execution:
        async for event in execution.stream():
            if event.type == "chunk":
                collected += event.data
                if len(collected) >= 100:
                    execution.cancel("enough text")
                    break
    return collected


async def main() -> dict[str, object]:
    outcomes: dict[str, object] = {}
    for name, pattern in [
        ("handle", via_handle),
        ("signal", via_signal),
        ("timeout", via_timeout),
        ("ui thread", via_ui_thread),
    ]:
        result = await pattern()
        assert result.cancel is not None
        assert result.partial is not None
        print(
            f"{name:10} {result.status.value} by {result.cancel.source.value} "
            f"({result.cancel.reason}); kept {len(result.partial.text)} chars"
        )
        outcomes[name] = result
    winner = await race_two()
    print(f"race       winner said {winner.value!r}")
    outcomes["race"] = winner
    text = await stream_until_enough()
    print(f"streaming  stopped after {len(text)} chars")
    outcomes["stream"] = text
    return outcomes


if __name__ == "__main__":
    trio.run(main)
