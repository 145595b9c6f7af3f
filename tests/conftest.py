"""Shared fixtures: the two execution hosts the contract suite runs on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import agtl
from agtl import Event, Session

Body = Callable[[Session], Awaitable[Any]]


class Host:
    """Builds an execution of ``body`` on one host; streaming finishes with done(value)."""

    name: str = ""

    def execution(self, provider: agtl.Provider, body: Body, **kwargs: Any) -> agtl.Execution[Any]:
        raise NotImplementedError


class SimpleHost(Host):
    name = "simple"

    def execution(self, provider: agtl.Provider, body: Body, **kwargs: Any) -> agtl.Execution[Any]:
        async def fn(session: Session) -> Any:
            return await body(session)

        return provider.simple_execution(fn, **kwargs)


class StreamingHost(Host):
    name = "streaming"

    def execution(self, provider: agtl.Provider, body: Body, **kwargs: Any) -> agtl.Execution[Any]:
        async def gen(session: Session) -> AsyncIterator[Event]:
            value = await body(session)
            yield await session.done(value)

        return provider.streaming_execution(gen, **kwargs)


@pytest.fixture(params=[SimpleHost(), StreamingHost()], ids=lambda h: h.name)
def host(request: pytest.FixtureRequest) -> Host:
    return request.param  # type: ignore[no-any-return]
