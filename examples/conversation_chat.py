"""A chat that survives Stop: the second reply is cut off, the third still answers in context.

Runs on the bundled local model. The conversation is saved to and loaded back from JSON.
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

        def ask(prompt: str, timeout: float | None = None) -> agtl.SimpleExecution[str]:
            async def turn(session: agtl.Session) -> str:
                reply = await session.generate_text(
                    conversation=conversation, prompt=prompt, cache_key="demo-chat"
                )
                return reply.text

            return provider.simple_execution(turn, timeout=timeout)

        await ask("What is the capital of France?").result()
        stopped = await ask("Write a long essay about the sea.", timeout=0.6).result()
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
