"""Quick start: run a workflow, read its Result and summary.

Runs on the scripted provider so it needs no model; swap in a real provider to go live.
"""

from __future__ import annotations

import trio

import agtl
from agtl.testing import Reply, ScriptedProvider


async def answer(session: agtl.Session) -> str:
    reply = await session.generate_text(
        prompt="What is the capital of France?",
        system="You are a helpful assistant.",
        max_tokens=64,  # a bound on every call: a sampled small model can ramble
        temperature=0,  # greedy: the same answer every run, also on the real model
    )
    return reply.text


async def main() -> agtl.Result[str]:
    provider = ScriptedProvider(Reply("The capital of France is Paris.", delay=0.05))
    result = await provider.simple_execution(answer, timeout=10).result()
    if result.status is agtl.Status.SUCCEEDED:
        print("answer:", result.value)
    elif result.status is agtl.Status.CANCELED:
        print("canceled:", result.cancel)
    else:
        print("failed:", result.error)
    print(result.summary.format())
    return result


if __name__ == "__main__":
    trio.run(main)
