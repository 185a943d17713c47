"""``kitaru-mcp``: a stdio Model Context Protocol server over ``KitaruClient``.

Coding assistants list, run, answer, replay and inspect executions through it.
It works on whatever the client reads: the local store, a PostgreSQL store
(``KITARU_STORE_URL``) or a Kitaru server this machine is logged in to.
Needs the ``mcp`` extra (``kitaru[mcp]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer


def build_server() -> MCPServer:
    """The MCP server with every Kitaru tool registered."""
    from kitaru.mcp._server import build_server as build

    return build()


def main() -> None:
    """Console script ``kitaru-mcp``: serve over stdin/stdout until the client hangs up."""
    from kitaru.mcp._server import main as run

    run()


__all__ = ["build_server", "main"]
