"""Fixtures shared by the provider tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from tests.providers.hostile_server import HostileServer


@pytest.fixture
async def hostile() -> AsyncIterator[HostileServer]:
    """A hostile OpenAI-compatible server on 127.0.0.1 for the test's duration."""
    server = HostileServer()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()
