"""Model calls that survive real providers, on real parts: the hostile OpenAI-compatible
server's limits, outages and stalls, with the real llama.cpp server (the bundled model) to
fall back or hedge to, through the OpenAI provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

import agtl
from agtl_openai import OpenAIProvider
from tests.local import free_port
from tests.providers.hostile_server import HostileServer

DEADLINE = 60
PACED = "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 "


@pytest.fixture
async def real(server_url: str) -> AsyncIterator[OpenAIProvider]:
    async with (
        OpenAIProvider(base_url=server_url)
        .with_default_model("smollm2")
        .with_default_options(temperature=0, max_tokens=8) as provider
    ):
        yield provider


def attempts(result: agtl.Result[Any]) -> list[dict[str, Any]]:
    found = result.summary.llm_calls[0].details["attempts"]
    assert isinstance(found, list)
    return found


async def ask(session: agtl.Session) -> str:
    return (await session.generate_text(prompt="Say hello.")).text


async def run_many(provider: agtl.Provider, count: int) -> list[agtl.Result[Any]]:
    results: list[agtl.Result[Any]] = []

    async def one() -> None:
        results.append(await provider.simple_execution(ask))

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(one)
    return results


async def test_shared_limits_keep_200_executions_under_the_servers_limit(
    hostile: HostileServer,
) -> None:
    hostile.admit = 8
    async with OpenAIProvider(base_url=hostile.base_url, max_retries=20) as client:
        limited = client.with_default_model("paced").with_limits(max_concurrent=8)
        results = await run_many(limited, 200)
        assert all(r.value == PACED for r in results)
        assert hostile.answered_429 == 0
        assert hostile.most_at_once == 8
        waits = [float(str(r.summary.llm_calls[0].details["queue_wait"])) for r in results]
        assert max(waits) > 1.0  # most of them queued here, not at the server
        # The same work with retries only: the server turns many away.
        results = await run_many(client.with_default_model("paced"), 200)
        assert all(r.succeeded for r in results)
        assert hostile.answered_429 > 50


async def test_429s_pause_the_whole_provider_and_lower_its_concurrency(
    hostile: HostileServer,
) -> None:
    hostile.admit = 4
    hostile.admit_retry_after = 0.3
    async with OpenAIProvider(base_url=hostile.base_url, max_retries=20) as client:
        limited = client.with_default_model("paced").with_limits(max_concurrent=16)
        results = await run_many(limited, 100)
        assert all(r.value == PACED for r in results)
        limits = limited.limits
        assert limits is not None
        assert limits.rate_limited > 0
        assert limits.concurrency is not None
        assert limits.concurrency < 16  # it slowed down and stays near what is admitted
        slowed = hostile.answered_429
        results = await run_many(client.with_default_model("paced"), 100)
        assert hostile.answered_429 - slowed > 2 * slowed  # without it, many more 429s


@pytest.mark.parametrize("kind", ["500", "503-outage", "refused", "429-long", "no-first-token"])
async def test_fallback_to_the_real_server_on_each_error_kind(
    hostile: HostileServer, real: OpenAIProvider, kind: str
) -> None:
    base_url, model = hostile.base_url, "ok"
    if kind == "500":
        model = "server-error"
    elif kind == "503-outage":
        hostile.outage = 503
    elif kind == "refused":
        base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    elif kind == "429-long":
        hostile.admit, hostile.admit_retry_after = 0, 30.0
    else:
        model, hostile.stall_every = "stall-first", 1
    async with OpenAIProvider(base_url=base_url, max_retries=2) as first:
        provider = first.with_default_model(model).with_fallback(
            real, first_token_timeout=2.0, max_wait=1.0
        )
        started = trio.current_time()
        with trio.fail_after(DEADLINE):
            result = await provider.simple_execution(ask)
    assert result.succeeded, result.error
    assert result.value
    tried, answered = attempts(result)
    assert tried["outcome"] == ("timeout" if kind == "no-first-token" else "error")
    assert (answered["model"], answered["outcome"]) == ("smollm2", "answered")
    assert result.summary.llm_calls[0].model == "smollm2"
    if kind != "no-first-token":
        # Straight to the next provider: no 30 s retry-after waited out, no backoff retries.
        assert tried["seconds"] < 0.4, tried
    assert trio.current_time() - started < 30
    await hostile.wait_idle()  # every connection to the failed server was released


async def test_no_fallback_once_the_first_token_came(
    hostile: HostileServer, real: OpenAIProvider
) -> None:
    async with OpenAIProvider(base_url=hostile.base_url) as first:
        provider = first.with_default_model("cut").with_fallback(real)
        with trio.fail_after(DEADLINE):
            result = await provider.simple_execution(ask)
    assert result.failed
    assert isinstance(result.error, agtl.ProviderConnectionError)
    assert result.partial is not None
    assert result.partial.text == "Hello there"
    assert [a["outcome"] for a in attempts(result)] == ["answered"]


async def test_a_hedge_beats_a_stalled_server_and_releases_its_connection(
    hostile: HostileServer, real: OpenAIProvider
) -> None:
    hostile.stall_every = 1
    async with OpenAIProvider(base_url=hostile.base_url) as first:
        provider = first.with_default_model("stall-first").with_hedge(real, after=0.3)
        started = trio.current_time()
        with trio.fail_after(DEADLINE):
            result = await provider.simple_execution(ask)
        took = trio.current_time() - started
        with trio.fail_after(5):
            await hostile.wait_idle()  # the loser's connection is closed at once
    assert result.succeeded
    assert took < 4  # not the 5 s stall
    lost, won = attempts(result)
    assert (lost["provider"], lost["outcome"]) == ("openai", "lost")
    assert lost["usage"]["output_tokens"] == 0
    assert (won["model"], won["outcome"]) == ("smollm2", "answered")


async def test_an_outage_opens_the_breaker_and_the_recovery_closes_it(
    hostile: HostileServer, real: OpenAIProvider
) -> None:
    hostile.outage = 503
    async with OpenAIProvider(base_url=hostile.base_url) as first:
        provider = first.with_default_model("paced").with_fallback(real, failures=2, cooldown=3)
        with trio.fail_after(DEADLINE):
            for _ in range(2):
                assert (await provider.simple_execution(ask)).succeeded
            assert provider.health()[0].state is agtl.BreakerState.OPEN
            asked = hostile.requests["paced"]
            result = await provider.simple_execution(ask)  # passed over: not even asked
            assert [a["outcome"] for a in attempts(result)] == ["answered"]
            assert hostile.requests["paced"] == asked
            hostile.outage = None  # the server recovers
            await trio.sleep(provider.health()[0].retry_in or 0.0)
            probe = await provider.simple_execution(ask)
    assert probe.value == PACED  # the probe went to the primary, which answered
    assert provider.health()[0].state is agtl.BreakerState.CLOSED
