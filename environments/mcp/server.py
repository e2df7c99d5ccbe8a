"""``MCPServer``: how to reach one MCP server and how its sessions live.

A server is either a command that envkit starts and talks to over stdin/stdout (``command=``),
or a streamable-HTTP endpoint (``url=``). ``per_episode`` picks the lifecycle:

* ``per_episode=True`` (the default, for servers with state): each episode gets its own
  session, opened at its first tool call and closed when the episode ends. Over stdio that is a
  fresh server process per episode; over HTTP a fresh MCP session (the server keeps its state
  per session: use ``mode="legacy"`` for servers that key state by the MCP session id).
* ``per_episode=False`` (read-only servers): one session per process, shared by every episode
  and every env. Calls from concurrent episodes are multiplexed over it (MCP requests carry
  ids); if the server dies, the next call starts a new one.

Example:
    >>> from envkit.environments.mcp import MCPServer
    >>> s = MCPServer(command="python server.py", name="files", prefix="files")
    >>> s.argv, s.transport_kind, s.per_episode
    (['python', 'server.py'], 'stdio', True)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shlex
import sys
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["MCPServer", "require_mcp"]

INSTALL_HINT = 'pip install "envkit-rl[mcp]"'


def require_mcp() -> Any:
    """Imports the ``mcp`` SDK, or raises an ImportError saying how to install it."""
    try:
        import mcp
        from mcp import Client  # noqa: F401  (mcp>=2: the unified client)
    except ImportError as e:
        raise ImportError(
            f"MCP tools need the official MCP SDK (mcp>=2.3): {INSTALL_HINT} ({e})"
        ) from e
    return mcp


class MCPServer(BaseModel):
    """One MCP server: its transport, its lifecycle and how its tools are offered.

    Args:
        command: The command line that starts a stdio server (a string is split like a shell
            would, or a list of arguments).
        url: The endpoint of a streamable-HTTP server (``http://127.0.0.1:8000/mcp``).
        env: Extra environment variables for a stdio server.
        cwd: Working directory of a stdio server.
        headers: HTTP headers sent with every request (e.g. ``Authorization``).
        name: A label used in messages (default: the command's program or the URL).
        prefix: If set, tools are offered as ``<prefix>_<tool>``.
        include: Only these tools (by the server's names) are offered.
        per_episode: A session per episode (stateful servers) or one shared by all episodes.
        call_timeout: Seconds a tool call may take before the model is told it timed out.
        connect_timeout: Seconds starting the server and the MCP handshake may take.
        mode: The MCP client's protocol negotiation: ``"auto"`` (newest the server speaks) or
            ``"legacy"`` (the initialize handshake, with a session id over HTTP).
        on_crash: When the server dies during an episode: ``"message"`` tells the model in a
            tool message; ``"infra_error"`` raises ``envkit.InfraError`` so the rollout records
            the episode as ``outcome="infra_error"``.
        stderr: ``"inherit"`` (the server's stderr goes to this process's) or ``"devnull"``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: str | list[str] | None = None
    url: str | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None
    headers: dict[str, str] | None = None
    name: str | None = None
    prefix: str | None = None
    include: list[str] | None = None
    per_episode: bool = True
    call_timeout: float = Field(default=30.0, gt=0)
    connect_timeout: float = Field(default=30.0, gt=0)
    mode: str = "auto"
    on_crash: Literal["message", "infra_error"] = "message"
    stderr: Literal["inherit", "devnull"] = "inherit"

    @field_validator("command")
    @classmethod
    def _split(cls, v: str | list[str] | None) -> list[str] | None:
        if v is None:
            return None
        argv = shlex.split(v) if isinstance(v, str) else [str(a) for a in v]
        if not argv:
            raise ValueError("command is empty: give the program that starts the server")
        return argv

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServer:
        if (self.command is None) == (self.url is None):
            raise ValueError(
                "give exactly one of command= (a stdio server envkit starts) or url= (a "
                "streamable-HTTP endpoint such as http://127.0.0.1:8000/mcp)"
            )
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        if self.url is not None and (self.env or self.cwd):
            raise ValueError("env= and cwd= are for stdio servers (command=), not url=")
        if self.command is not None and self.headers:
            raise ValueError("headers= are for HTTP servers (url=), not command=")
        return self

    @property
    def argv(self) -> list[str]:
        """The command line of a stdio server (empty for HTTP)."""
        return list(self.command or [])  # type: ignore[arg-type]

    @property
    def transport_kind(self) -> Literal["stdio", "http"]:
        """``"stdio"`` or ``"http"``."""
        return "stdio" if self.command is not None else "http"

    @property
    def label(self) -> str:
        """The server's name in messages."""
        if self.name:
            return self.name
        if self.url is not None:
            return self.url
        argv = [os.path.basename(a) for a in self.argv[:2]]
        return " ".join(argv)

    @property
    def key(self) -> str:
        """A key of what decides which server this is (listings and shared sessions use it)."""
        which = self.model_dump(include={"command", "url", "env", "cwd", "headers", "mode"})
        return hashlib.sha256(json.dumps(which, sort_keys=True).encode()).hexdigest()[:16]

    @contextlib.asynccontextmanager
    async def open_transport(self) -> AsyncIterator[Any]:
        """Opens the MCP transport (starts the stdio process); yields its stream pair."""
        require_mcp()
        if self.command is not None:
            from mcp import StdioServerParameters
            from mcp.client.stdio import stdio_client

            argv = self.argv
            params = StdioServerParameters(
                command=argv[0], args=argv[1:], env=self.env, cwd=self.cwd
            )
            with contextlib.ExitStack() as files:
                if self.stderr == "devnull":
                    errlog = files.enter_context(open(os.devnull, "w"))
                else:
                    errlog = _real_stderr()
                async with stdio_client(params, errlog=errlog) as streams:
                    yield streams
            return
        import httpx2
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT

        # mcp's create_mcp_http_client, but with one SSL context for the process: loading the
        # CA bundle costs ~0.15 s of CPU, paid by every session (every episode) otherwise.
        timeout = httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT)
        client = httpx2.AsyncClient(
            timeout=timeout, headers=dict(self.headers or {}), verify=_ssl_context()
        )
        async with (
            client as http,
            streamable_http_client(self.url or "", http_client=http) as streams,
        ):
            yield streams


@functools.cache
def _ssl_context() -> Any:
    import httpx2

    return httpx2.create_ssl_context()


def _real_stderr() -> Any:
    """A stderr with a file descriptor (pytest and notebooks replace ``sys.stderr``)."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.fileno()
                return stream
        except (AttributeError, OSError, ValueError):
            continue
    return open(os.devnull, "w")
