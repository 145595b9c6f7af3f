"""Every private part of the MCP SDK agtl uses, in one place (only ``agtl.mcp`` imports it).

Checked against the pinned ``mcp==2.3.0`` (``requirements/mcp.txt``);
``tests/mcp/test_compat.py`` fails loudly, naming the attribute, when an upgrade moves one.
"""

from __future__ import annotations

from mcp.shared._httpx_utils import create_mcp_http_client

__all__ = ["create_mcp_http_client"]

# ``create_mcp_http_client(headers=...)``: the HTTP client the SDK builds for its
# streamable-HTTP transport (its timeouts and redirects), to which agtl adds its headers and
# a response hook. mcp 2.3.0 keeps it in a private module.
