"""A small stateful MCP server written with FastMCP, for the MCP interop tests.

Run over stdio: ``python mcp_server.py``; over streamable HTTP on 127.0.0.1:
``python mcp_server.py --http PORT``. Over stdio the state (a counter and a key-value store) is
the process's; over HTTP it is kept per MCP session (the session id of the handshake).
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from typing import Any

from fastmcp import Context, FastMCP
from mcp_types import EmbeddedResource, ImageContent, TextContent, TextResourceContents

HTTP = "--http" in sys.argv
mcp = FastMCP("envkit-test")
_states: dict[str, dict[str, Any]] = {}


def _state(ctx: Context) -> dict[str, Any]:
    key = ctx.session_id if HTTP else "process"
    return _states.setdefault(key, {"count": 0, "kv": {}})


@mcp.tool
def incr(ctx: Context, by: int = 1) -> int:
    """Adds `by` to the counter and returns its new value."""
    state = _state(ctx)
    state["count"] += by
    return int(state["count"])


@mcp.tool
def put(ctx: Context, key: str, value: str) -> str:
    """Stores a value under a key."""
    _state(ctx)["kv"][key] = value
    return f"stored {key}"


@mcp.tool
def get(ctx: Context, key: str) -> str:
    """Returns the value stored under a key."""
    kv = _state(ctx)["kv"]
    if key not in kv:
        raise ValueError(f"no value under {key!r}")
    return str(kv[key])


@mcp.tool
def pid() -> int:
    """Returns the server's process id."""
    return os.getpid()


@mcp.tool
def crash() -> str:
    """Kills the server process in the middle of the call."""
    os._exit(3)


@mcp.tool
async def hang() -> str:
    """Never answers."""
    await asyncio.sleep(3600)
    return "unreachable"


@mcp.tool
def picture() -> list[Any]:
    """Returns text, an image and an embedded text resource."""
    return [
        TextContent(type="text", text="a red pixel:"),
        ImageContent(
            type="image", data=base64.b64encode(b"\x89PNG1234").decode(), mime_type="image/png"
        ),
        EmbeddedResource(
            type="resource",
            resource=TextResourceContents(
                uri="file:///notes.txt", text="hello notes", mime_type="text/plain"
            ),
        ),
    ]


if __name__ == "__main__":
    if HTTP:
        import uvicorn

        port = int(sys.argv[sys.argv.index("--http") + 1])
        uvicorn.run(mcp.http_app(), host="127.0.0.1", port=port, log_level="warning")
    else:
        mcp.run(show_banner=False, log_level="WARNING")
