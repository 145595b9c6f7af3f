"""Calls that survive a provider going away: a remote server first, the bundled model in
this process as the fallback, and limits every execution on the remote shares.

The "remote" here is an address where nothing listens (pass `--base-url URL --model NAME` to
use a server of yours; the key comes from OPENAI_API_KEY). Each call tries it, falls back to
the local model before any text, and its summary lists both attempts with what each cost.
After `failures` failed calls in a row the breaker opens and the remote is passed over.
"""

from __future__ import annotations

import argparse
import socket

import trio

import agtl
from agtl_llamacpp import LlamaCppProvider
from agtl_openai import OpenAIProvider

SYSTEM = "You are a helpful assistant."


async def answer(session: agtl.Session) -> str:
    reply = await session.generate_text(
        prompt="What is the capital of France?", system=SYSTEM, temperature=0, max_tokens=24
    )
    return reply.text


def nowhere() -> str:
    """An address on this machine where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1"


async def main(argv: list[str] | None = None) -> list[agtl.Result[str]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url")
    parser.add_argument("--model", default="remote-model")
    args = parser.parse_args(argv)
    async with (
        OpenAIProvider(base_url=args.base_url or nowhere(), max_retries=0) as remote,
        LlamaCppProvider() as local,
    ):
        provider = (
            remote.with_default_model(args.model)
            .with_limits(max_concurrent=4, requests_per_minute=600)
            .with_fallback(local, first_token_timeout=10, failures=2, cooldown=60)
        )
        results = []
        for _ in range(3):
            result = await provider.simple_execution(answer)
            call = result.summary.llm_calls[0]
            attempts = call.details.get("attempts")
            assert isinstance(attempts, list)
            print(f"{result.value!r}  cost {call.cost}")
            for attempt in attempts:
                why = f": {attempt['error'][:60]}" if attempt["error"] else ""
                print(f"    {attempt['provider']:9} {attempt['outcome']:9}{why}")
            results.append(result)
        for health in provider.health():
            print(f"{health.provider}: breaker {health.state.value}, {health.failures} failures")
    return results


if __name__ == "__main__":
    trio.run(main)
