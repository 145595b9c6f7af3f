"""The private part of the MCP SDK agtl uses is still there and builds what agtl needs."""

from __future__ import annotations

from agtl import _mcp_compat


async def test_the_sdk_still_builds_its_http_client_with_headers() -> None:
    client = _mcp_compat.create_mcp_http_client(headers={"X-Test": "yes"})
    async with client:
        assert client.headers["X-Test"] == "yes"
        assert "response" in client.event_hooks  # agtl adds a response hook to it
