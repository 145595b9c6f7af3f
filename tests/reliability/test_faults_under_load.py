"""50 concurrent executions against a server that fails, stalls and cuts streams at random.

Every execution has a timeout; each must end within it (plus a small grace for closing),
with the outcome its fault calls for. Rounds alternate between a server that closes every
connection after its response and one that keeps connections alive (as real servers do).
While the provider is still open after a round, the client's pool has no connection in use
and every connection the server still holds is one the pool keeps idle (no more than the
pool may keep), and no file descriptor other than those idle sockets was added; once the
provider is closed, no connection to the server is open and no task is left.
"""

from __future__ import annotations

import os
import random
from typing import Any

import trio
import trio.testing

import agtl
from agtl import Session, Status
from agtl.result import CancelSource
from agtl_openai import OpenAIProvider
from tests.providers.hostile_server import HostileServer
from tests.reliability.conftest import Tally, cases, non_socket_fds, open_sockets, pool_state
from tests.waiting import wait_until

TIMEOUT = 2.0
#: Wall-clock allowance past the timeout for closing up: 50 executions share two cores with
#: the server, and a loaded machine stretches every close.
GRACE = 2.0
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


async def one_round(rng: random.Random, tally: Tally, *, keep_alive: bool, round_: int) -> None:
    server = HostileServer(keep_alive=keep_alive)
    mode = "keep-alive" if keep_alive else "connection: close"
    async with trio.open_nursery() as servers:
        await servers.start(server.serve)
        await trio.testing.wait_all_tasks_blocked()
        tasks_before = trio.lowlevel.current_statistics().tasks_living
        sockets_before = open_sockets()
        others_before = non_socket_fds()
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

        async with provider:
            async with trio.open_nursery() as nursery:
                for fault in faults:
                    nursery.start_soon(one, fault)
            # The provider is still open: nothing in use, and what the server still holds is
            # exactly what the pool keeps idle for reuse.
            await wait_until(
                lambda: server.open_connections == pool_state(provider).idle,
                "the server's connections matching the pool's idle ones",
                seconds=5,
            )
            pool = pool_state(provider)
            assert pool.in_use == 0, pool
            assert pool.idle <= pool.max_idle, pool
            if not keep_alive:
                assert pool.idle == 0, pool  # every response said `connection: close`
            assert non_socket_fds() == others_before
        for number, (fault, result, took) in enumerate(outcomes):
            tally.start(f"server faults x50 concurrent ({mode}): {fault}", key=(round_, number))
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
            # Landed: the server really served this fault (it counts requests per fault).
            tally.hold(
                f"server faults x50 concurrent ({mode}): {fault}",
                landed=server.requests[fault] > 0,
                seconds=took,
            )
        # every connection closed by the client side, no task of ours left
        with trio.fail_after(5):
            await server.wait_idle()
        assert server.open_connections == 0
        await trio.testing.wait_all_tasks_blocked()
        assert trio.lowlevel.current_statistics().tasks_living == tasks_before
        assert open_sockets() == sockets_before  # both ends of every connection are closed
        servers.cancel_scope.cancel()


async def test_random_faults_under_concurrency(tally: Tally) -> None:
    seed = int(os.environ.get("AGTL_FUZZ_SEED") or random.randrange(2**32))
    print(f"faults under load: seed={seed} (AGTL_FUZZ_SEED={seed} replays it)")
    rng = random.Random(seed)
    for index in range(cases(full=4, quick=2)):
        try:
            await one_round(rng, tally, keep_alive=index % 2 == 0, round_=index)
        except BaseException as exc:
            exc.add_note(f"seed={seed} round #{index}")
            raise
