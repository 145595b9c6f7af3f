"""A chat that survives Stop: the second reply is cut off, the third still answers in context.

Runs on the bundled local model. Stop is pressed once the second reply has streamed 20
pieces (a cancel signal, as a UI's Stop button would fire). The conversation is saved to and
loaded back from JSON.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import trio

import agtl
from agtl_llamacpp import LlamaCppProvider


async def main() -> agtl.Conversation:
    conversation = agtl.Conversation(system="You are a helpful assistant.")
    async with LlamaCppProvider().with_default_options(temperature=0) as provider:

        def ask(prompt: str, stop_after: int | None = None) -> agtl.SimpleExecution[str]:
            stop = agtl.CancelSignal()

            async def turn(session: agtl.Session) -> str:
                async with session.stream_text(
                    conversation=conversation, prompt=prompt, cache_key="demo-chat"
                ) as reply:
                    pieces = 0
                    async for _ in reply:
                        pieces += 1
                        if pieces == stop_after:
                            stop.cancel("Stop pressed")
                return reply.text

            return provider.simple_execution(turn, signal=stop)

        await ask("What is the capital of France?").result()
        stopped = await ask("Write a long essay about the sea.", stop_after=20).result()
        if stopped.cancel is not None:
            print(f"(turn 2 {stopped.status.value} by {stopped.cancel.source.value})")
        await ask("What is the capital of Italy?").result()

    for item in conversation:
        if isinstance(item, agtl.CancelMarker):
            print(f"  -- stopped: {item.reason or item.error} --")
        else:
            flag = " [partial]" if item.partial else ""
            print(f"{item.role.value:>9}{flag}: {item.content[:70]!r}")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "chat.json"
        conversation.save(path)
        restored = agtl.Conversation.load(path)
    assert restored.items == conversation.items
    return restored


if __name__ == "__main__":
    trio.run(main)
