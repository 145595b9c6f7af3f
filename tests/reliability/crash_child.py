"""A process that writes durable state in a loop until it is killed (SIGKILL) by the tests.

``python -m tests.reliability.crash_child MODE DIR`` where MODE is ``sink`` (summary records
through a JsonlSink), ``conversation`` (a Conversation saved after every entry) or ``kv`` (KV
session turns on the bundled model). After each write is complete it prints
``committed <what>`` and flushes, so the parent knows what must survive the kill.

The disk is made slow, so that a kill at a random moment usually lands inside a write (the
window the test exists for) rather than between writes: every ``fsync`` takes a while, and
in ``sink`` mode the summary line goes out in small pieces (short writes, as on a full disk),
each followed by a pause.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import trio

import agtl
from agtl import Conversation, Session
from agtl.reporting import JsonlSink
from agtl.testing import Reply, ScriptedProvider


def say(text: str) -> None:
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


async def sink_loop(directory: Path) -> None:
    provider = ScriptedProvider(respond=lambda request: Reply("some words " * 50))
    provider = provider.with_summary_sink(JsonlSink(directory / "summaries.jsonl"))

    async def work(session: Session) -> str:
        return (await session.generate_text(prompt="go")).text

    while True:
        result = await provider.simple_execution(work).result()
        say(f"committed {result.execution_id}")


async def conversation_loop(directory: Path) -> None:
    path = directory / "chat.json"
    conversation = Conversation.load(path) if path.exists() else Conversation()
    while True:
        conversation.add_user("hello " * 200)
        conversation.save(path)
        say(f"committed {len(conversation.entries)}")
        await trio.lowlevel.checkpoint()


async def kv_loop(directory: Path) -> None:
    from agtl_llamacpp import LlamaCppProvider

    async with LlamaCppProvider(n_ctx=2048, cache_dir=directory) as provider:
        history = [{"role": "system", "content": "You are a helpful assistant."}]
        turn = 0
        while True:
            turn += 1
            history.append({"role": "user", "content": f"Tell me fact number {turn}."})

            async def ask(session: Session) -> agtl.TextResult:
                return await session.generate_text(
                    messages=history, max_tokens=6, temperature=0, cache_key="crash"
                )

            result = await provider.simple_execution(ask).result()
            history.append({"role": "assistant", "content": result.unwrap().text})
            say(f"committed {result.summary.llm_calls[0].details['kv_committed_generation']}")


#: How long the slow disk takes per fsync, and per piece of a summary line (seconds).
SLOW_FSYNC = {"sink": 0.0, "conversation": 0.02, "kv": 0.25}
PIECE_BYTES, PIECE_PAUSE = 256, 0.002


def slow_disk(mode: str) -> None:
    """Make the writes of ``mode`` take long enough for a random kill to land in them."""
    real_fsync, real_write = os.fsync, os.write

    def fsync(fd: Any) -> None:
        real_fsync(fd)
        time.sleep(SLOW_FSYNC[mode])

    def write(fd: int, data: Any) -> int:
        written = real_write(fd, bytes(data[:PIECE_BYTES]))
        time.sleep(PIECE_PAUSE)
        return written

    os.fsync = fsync
    if mode == "sink":
        os.write = write


LOOPS = {"sink": sink_loop, "conversation": conversation_loop, "kv": kv_loop}

if __name__ == "__main__":
    mode, directory = sys.argv[1], Path(sys.argv[2])
    slow_disk(mode)
    say("ready")
    trio.run(LOOPS[mode], directory)
