"""The registry's bounds, in-process on a virtual clock: retention by count and by age."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import trio

import agtl
from agtl.serve._registry import Busy, Registry
from agtl.testing import Reply, ScriptedProvider


async def quick(session: agtl.Session) -> AsyncIterator[agtl.Event]:
    yield await session.done("ok")


def make(provider: ScriptedProvider) -> Any:
    return lambda signal: provider.streaming_execution(quick, signal=signal)


async def test_finished_executions_are_forgotten_by_count_then_by_age(
    autojump_clock: trio.abc.Clock,
) -> None:
    provider = ScriptedProvider(respond=lambda request: Reply("x"))
    registry = Registry(max_running=4, keep_finished=2, keep_seconds=60, disconnect_grace=5)
    async with trio.open_nursery() as nursery:
        registry.open(nursery)
        ids = []
        for _ in range(3):
            served = registry.start(make(provider), detached=True)
            await served.finished.wait()
            ids.append(served.id)
        assert registry.get(ids[0]) is None  # the oldest, over the count
        assert registry.get(ids[1]) is not None
        await trio.sleep(61)
        assert registry.get(ids[2]) is None  # past the age
        await registry.close()
        nursery.cancel_scope.cancel()


async def test_the_running_limit_and_the_grace_from_the_start(
    autojump_clock: trio.abc.Clock,
) -> None:
    provider = ScriptedProvider(respond=lambda request: Reply("x"))

    async def forever(session: agtl.Session) -> AsyncIterator[agtl.Event]:
        await trio.sleep_forever()
        yield await session.done(None)

    registry = Registry(max_running=1, keep_finished=10, keep_seconds=60, disconnect_grace=5)
    async with trio.open_nursery() as nursery:
        registry.open(nursery)
        served = registry.start(
            lambda signal: provider.streaming_execution(forever, signal=signal), detached=False
        )
        try:
            registry.start(make(provider), detached=True)
        except Busy:
            pass
        else:
            raise AssertionError("a second execution started past max_running=1")
        await served.finished.wait()  # nobody connected: cancelled after the grace
        outcome = served.execution.outcome
        assert outcome is not None
        assert outcome.cancel is not None
        assert outcome.cancel.reason == "client disconnected"
        assert outcome.cancel.at == 5
        await registry.close()
        nursery.cancel_scope.cancel()
