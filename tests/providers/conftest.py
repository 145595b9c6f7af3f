"""Fixtures shared by the provider tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from agtl_openai.testing import serve_local_model
from tests.providers.hostile_server import HostileServer


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A real OpenAI-compatible server: llama_cpp.server with the bundled model, on loopback."""
    with serve_local_model() as url:
        yield url


@pytest.fixture
async def hostile() -> AsyncIterator[HostileServer]:
    """A hostile OpenAI-compatible server on 127.0.0.1 for the test's duration."""
    server = HostileServer()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()
