"""MCP servers as envkit tools, and ``MCPEnv``: environments built on MCP servers.

* ``MCPServer``: how to reach a server (``command=`` over stdio, ``url=`` over streamable HTTP)
  and its lifecycle (``per_episode=True``: a fresh session or process per episode; ``False``:
  one shared by all episodes of the process).
* ``MCPToolset``: a server's tools as envkit ``Tool``s (for any ``ChatEnv``'s ``ToolBox``).
* ``MCPEnv`` and ``register_mcp_env``: an env from servers, tasks and a reward.

The ``mcp`` SDK is imported only when a server is contacted: ``pip install "envkit-rl[mcp]"``.
See docs/interop.md, "MCP servers as tools".
"""

from __future__ import annotations

from envkit.environments.mcp.connection import MCPConnection, close_all
from envkit.environments.mcp.env import MCPEnv, MCPTask, register_mcp_env
from envkit.environments.mcp.server import MCPServer, require_mcp
from envkit.environments.mcp.tools import (
    MCPServerCrashed,
    MCPTool,
    MCPToolError,
    MCPToolset,
    describe_result,
    list_server_tools,
)

__all__ = [
    "MCPConnection",
    "MCPEnv",
    "MCPServer",
    "MCPServerCrashed",
    "MCPTask",
    "MCPTool",
    "MCPToolError",
    "MCPToolset",
    "close_all",
    "describe_result",
    "list_server_tools",
    "register_mcp_env",
    "require_mcp",
]
