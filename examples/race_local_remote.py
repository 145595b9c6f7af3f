"""Race the in-process model against an OpenAI-compatible server; the loser is cancelled.

Pass `--base-url URL --model NAME` to race a server of yours (the key comes from
OPENAI_API_KEY). Without them, a local llama.cpp server is started on 127.0.0.1 for the race.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

import trio

import agtl
from agtl_llamacpp import LlamaCppProvider
from agtl_openai import OpenAIProvider
from agtl_openai.testing import serve_local_model

SYSTEM = "You are a helpful assistant."


async def answer(session: agtl.Session) -> str:
    reply = await session.generate_text(
        prompt="What is the capital of France?", system=SYSTEM, temperature=0, max_tokens=32
    )
    return f"{session.provider.name}: {reply.text}"


@contextlib.contextmanager
def server(base_url: str | None) -> Iterator[str]:
    if base_url is not None:
        yield base_url
    else:
        with serve_local_model() as url:
            yield url


async def race(base_url: str, model: str) -> tuple[agtl.Result[str], list[agtl.Result[str]]]:
    async with (
        LlamaCppProvider() as local,
        OpenAIProvider(base_url=base_url).with_default_model(model) as remote,
    ):
        executions = [local.simple_execution(answer), remote.simple_execution(answer)]
        winner = await agtl.race(*executions)
        outcomes = [e.outcome for e in executions if e.outcome is not None]
    print("winner:", winner.value)
    for outcome in outcomes:
        call = outcome.summary.llm_calls[0] if outcome.summary.llm_calls else None
        where = call.model_key if call else "(no call)"
        print(f"  {outcome.status.value:9} {where:45} {outcome.summary.duration:.3f}s")
    return winner, outcomes


def main(argv: list[str] | None = None) -> tuple[agtl.Result[str], list[agtl.Result[str]]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url")
    parser.add_argument("--model", default="local-server")
    args = parser.parse_args(argv)
    with server(args.base_url) as url:
        return trio.run(race, url, args.model)


if __name__ == "__main__":
    main()
