"""50 concurrent executions against a server that fails, stalls and cuts streams at random.

Every execution has a timeout; each must end within it (plus a small grace for closing),
with the outcome its fault calls for, and afterwards no connection to the server is open
and no task is left.
"""

from __future__ import annotations

import random
from typing import Any

import trio
import trio.testing

import agtl
from agtl import Session, Status
from agtl.result import CancelSource
from agtl_openai import OpenAIProvider
from tests.providers.hostile_server import HostileServer
from tests.reliability.conftest import Tally, cases, open_sockets

TIMEOUT = 2.0
GRACE = 0.5
SECRET = "sk-fault-injection-0000"

# fault -> (status, error type or cancel source)
EXPECTED: dict[str, tuple[Status, Any]] = {
    "ok": (Status.SUCCEEDED, None),
    "server-error": (Status.FAILED, agtl.ServerError),
    "unauthorized": (Status.FAILED, agtl.AuthenticationError),
    "cut": (Status.FAILED, agtl.ProviderConnectionError),
    "malformed": (Status.FAILED, agtl.ProviderConnectionError),
    "no-finish": (Status.FAILED, agtl.IncompleteStreamError),
    "stall": (Status.FAILED, agtl.StallTimeoutError),
    "endless": (Status.CANCELED, CancelSource.TIMEOUT),
}


async def one_round(rng: random.Random, tally: Tally) -> None:
    server = HostileServer()
    async with trio.open_nursery() as servers:
        await servers.start(server.serve)
        await trio.testing.wait_all_tasks_blocked()
        tasks_before = trio.lowlevel.current_statistics().tasks_living
        sockets_before = open_sockets()
        provider = OpenAIProvider(api_key=SECRET, base_url=server.base_url, max_retries=1)
        faults = [rng.choice(list(EXPECTED)) for _ in range(50)]
        outcomes: list[tuple[str, agtl.Result[str], float]] = []

        async def one(fault: str) -> None:
            async def fn(session: Session) -> str:
                reply = await session.generate_text(prompt="hi", model=fault, stall_timeout=0.3)
                return reply.text

            started = trio.current_time()
            result = await provider.simple_execution(fn, timeout=TIMEOUT).result()
            outcomes.append((fault, result, trio.current_time() - started))

        async with provider, trio.open_nursery() as nursery:
            for fault in faults:
                nursery.start_soon(one, fault)
        for fault, result, took in outcomes:
            tally.start(f"server faults x50 concurrent: {fault}")
            status, detail = EXPECTED[fault]
            assert result.status is status, (fault, result, result.error)
            if status is Status.FAILED:
                assert isinstance(result.error, detail), (fault, result.error)
                assert SECRET not in repr(result.error) + str(result.summary.to_dict())
            elif status is Status.CANCELED:
                assert result.cancel is not None
                assert result.cancel.source is detail
            else:
                assert result.value == "Hello there!"
            assert took <= TIMEOUT + GRACE, (fault, took)
            tally.hold(f"server faults x50 concurrent: {fault}")
        # every connection closed by the client side, no task of ours left
        with trio.fail_after(5):
            await server.wait_idle()
        assert server.open_connections == 0
        await trio.testing.wait_all_tasks_blocked()
        assert trio.lowlevel.current_statistics().tasks_living == tasks_before
        assert open_sockets() == sockets_before  # both ends of every connection are closed
        servers.cancel_scope.cancel()


async def test_random_faults_under_concurrency(tally: Tally) -> None:
    rng = random.Random()
    for _ in range(cases(full=4, quick=1)):
        await one_round(rng, tally)
