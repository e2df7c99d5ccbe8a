"""MCP tools as envkit tools: ``MCPTool`` and the ``MCPToolset`` of one or more servers.

Each tool a server lists becomes an envkit ``Tool`` with the server's name (or
``<prefix>_<name>``), description and JSON input schema as its OpenAI function schema. A call
is validated against that schema, sent with the server's ``call_timeout``, and its result
becomes the tool message: text content joined with newlines, other content described
(``[image: image/png, 1234 bytes]``). Failures become tool messages too, through ``ToolBox``:
a server ``isError`` result (``MCPToolError``), bad arguments, an unknown tool, a timeout, a
server that crashed (``MCPServerCrashed``, or ``envkit.InfraError`` with
``on_crash="infra_error"``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from envkit.environments.mcp import _loop
from envkit.environments.mcp.connection import MCPConnection, ServerGone, describe_error
from envkit.environments.mcp.server import MCPServer
from envkit.errors import InfraError
from envkit.tools import Tool, parse_arguments

__all__ = [
    "MCPServerCrashed",
    "MCPTool",
    "MCPToolError",
    "MCPToolset",
    "describe_result",
    "list_server_tools",
]

_BAD_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


class MCPToolError(Exception):
    """The server answered the call with ``isError: true``; the message is its text."""


class MCPServerCrashed(Exception):
    """The server died (or could not be reached) during the episode."""


@dataclass(frozen=True)
class ToolInfo:
    """What a server says about one of its tools."""

    name: str
    description: str
    input_schema: dict[str, Any]


# --------------------------------------------------------------------------- results
def _nbytes(b64: str) -> int:
    try:
        return len(base64.b64decode(b64, validate=False))
    except (ValueError, TypeError):
        return len(b64) * 3 // 4


def _describe_block(block: Any) -> str:
    kind = getattr(block, "type", None)
    if kind == "text":
        return str(block.text)
    if kind in ("image", "audio"):
        return f"[{kind}: {block.mime_type}, {_nbytes(block.data)} bytes]"
    if kind == "resource_link":
        extra = ", ".join(
            x for x in (getattr(block, "name", None), getattr(block, "mime_type", None)) if x
        )
        return f"[resource link: {block.uri}" + (f" ({extra})]" if extra else "]")
    if kind == "resource":
        res = block.resource
        text = getattr(res, "text", None)
        if text is not None:
            return f"[resource {res.uri}]\n{text}"
        mime = getattr(res, "mime_type", None) or "binary"
        return f"[resource {res.uri}: {mime}, {_nbytes(getattr(res, 'blob', ''))} bytes]"
    return f"[{kind or type(block).__name__} content]"


def describe_result(result: Any) -> str:
    """The text of a ``CallToolResult``: text blocks joined, other blocks described.

    A result without content blocks shows its ``structuredContent`` as JSON.

    Example:
        >>> from mcp_types import CallToolResult, ImageContent, TextContent
        >>> print(describe_result(CallToolResult(content=[
        ...     TextContent(type="text", text="a pixel:"),
        ...     ImageContent(type="image", data="AAAA", mime_type="image/png")])))
        a pixel:
        [image: image/png, 3 bytes]
    """
    parts = [_describe_block(b) for b in (result.content or [])]
    if not parts and getattr(result, "structured_content", None) is not None:
        parts.append(json.dumps(result.structured_content))
    return "\n".join(parts)


# --------------------------------------------------------------------------- shared sessions
class _SharedSessions:
    """One session per read-only server (``per_episode=False``) for the whole process."""

    def __init__(self) -> None:
        self.conns: dict[str, MCPConnection] = {}
        self.refs: dict[str, int] = {}
        self.lock = threading.Lock()

    async def aget(self, server: MCPServer) -> MCPConnection:
        """The live shared session (started or restarted here). Runs on the MCP loop."""
        conn = self.conns.get(server.key)
        if conn is None or conn.state in ("dead", "closed"):
            conn = self.conns[server.key] = MCPConnection(server)
        await conn.astart()
        return conn

    def acquire(self, server: MCPServer) -> None:
        with self.lock:
            self.refs[server.key] = self.refs.get(server.key, 0) + 1

    def release(self, server: MCPServer) -> None:
        """Drops a user; the last one closes the session (and stops a stdio server)."""
        with self.lock:
            n = self.refs.get(server.key, 0) - 1
            if n > 0:
                self.refs[server.key] = n
                return
            self.refs.pop(server.key, None)
            conn = self.conns.pop(server.key, None)
        if conn is not None:
            conn.close()


_shared = _SharedSessions()
_listings: dict[str, list[ToolInfo]] = {}
_listings_lock = threading.Lock()


def list_server_tools(server: MCPServer, *, refresh: bool = False) -> list[ToolInfo]:
    """The tools ``server`` lists (cached per server for the process; ``refresh`` re-lists).

    A per-episode server is started for the listing and stopped again; a shared one stays up.

    Raises:
        ConnectionError: the server could not be started or did not answer the listing.
    """
    return _list_tools(server, refresh=refresh, keep=False)[0]


def _list_tools(
    server: MCPServer, *, refresh: bool = False, keep: bool = False
) -> tuple[list[ToolInfo], MCPConnection | None]:
    """The listing, and with ``keep`` the per-episode session it was read from (still open)."""
    with _listings_lock:
        if not refresh and server.key in _listings:
            return _listings[server.key], None
    kept: list[MCPConnection] = []

    async def _list() -> list[Any]:
        if not server.per_episode:
            return await (await _shared.aget(server)).alist_tools()
        conn = MCPConnection(server)
        ok = False
        try:
            await conn.astart()
            tools = await conn.alist_tools()
            ok = True
            return tools
        finally:
            if ok and keep:
                kept.append(conn)
            else:
                await conn.aclose()

    try:
        tools = _loop.run(_list(), timeout=2 * server.connect_timeout + 10)
    except (ServerGone, TimeoutError, OSError) as e:
        raise ConnectionError(
            f"could not list the tools of MCP server {server.label!r}: {e}. Check that "
            + (
                f"the command {' '.join(server.argv)!r} starts an MCP stdio server"
                if server.transport_kind == "stdio"
                else f"an MCP server answers at {server.url}"
            )
        ) from e
    except Exception as e:
        raise ConnectionError(
            f"could not list the tools of MCP server {server.label!r}: {describe_error(e)}"
        ) from e
    infos = [
        ToolInfo(
            name=t.name,
            description=(t.description or getattr(t, "title", None) or "").strip(),
            input_schema=dict(t.input_schema or {}),
        )
        for t in tools
    ]
    with _listings_lock:
        _listings[server.key] = infos
    return infos, (kept[0] if kept else None)


# --------------------------------------------------------------------------- the tool
class MCPTool(Tool):
    """One tool of an MCP server, callable by the model through a ``ToolBox``.

    Attributes:
        name: The name the model calls it by (``<prefix>_<remote_name>`` with a prefix).
        remote_name: The server's name for it.
        server: The ``MCPServer`` it belongs to.
    """

    def __init__(self, toolset: MCPToolset, index: int, info: ToolInfo, name: str) -> None:
        # Tool's own __init__ reads a Python signature; an MCP tool brings a JSON schema.
        server = toolset.servers[index]
        self.fn = self.run
        self.name = name
        self.remote_name = info.name
        self.server = server
        self.description = info.description or (
            f"Tool {info.name!r} of the MCP server {server.label!r}."
        )
        self.timeout = server.call_timeout
        self.is_async = True
        self._bound_self = False
        self._toolset = toolset
        self._index = index
        params = dict(info.input_schema)
        params.setdefault("type", "object")
        params.setdefault("properties", {})
        self.input_schema = params
        self.schema = {
            "type": "function",
            "function": {"name": name, "description": self.description, "parameters": params},
        }
        self._validator: Any = None

    def __get__(self, obj: Any, objtype: Any = None) -> MCPTool:
        return self

    def __call__(self, **kwargs: Any) -> str:
        """Calls the tool from sync code (validated) and returns its text."""
        return _loop.run(self._toolset._acall(self, self.validate(kwargs)))

    def validate(self, arguments: str | dict[str, Any]) -> dict[str, Any]:
        """Parses the arguments and checks them against the tool's JSON input schema.

        Raises:
            ValueError: malformed JSON or not an object.
            TypeError: the arguments do not fit the schema (the message lists what is wrong).
        """
        arguments = parse_arguments(arguments)
        if self._validator is None:
            import jsonschema

            cls = jsonschema.validators.validator_for(self.input_schema)
            self._validator = cls(self.input_schema)
        problems = [
            f"{'.'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
            for err in self._validator.iter_errors(arguments)
        ]
        if problems:
            raise TypeError(f"invalid arguments for {self.name}: " + "; ".join(problems[:5]))
        return arguments

    async def run(self, kwargs: dict[str, Any]) -> str:
        """Runs the call on the MCP loop (from any loop); returns the result's text."""
        return await _loop.arun(self._toolset._acall(self, kwargs))

    def __repr__(self) -> str:
        return f"MCPTool({self.name!r} -> {self.server.label}:{self.remote_name})"


# --------------------------------------------------------------------------- the toolset
class MCPToolset:
    """The tools of one or more MCP servers and the sessions behind them.

    An env owns one toolset: ``start_episode()`` at reset opens fresh sessions of the
    per-episode servers (closing the previous episode's), ``end_episode()`` closes them when the
    episode ends, ``close()`` releases everything. Shared servers are opened once per process.

    Args:
        servers: The servers (an ``MCPServer`` or a list of them).

    Raises:
        ValueError: two tools would have the same name (set ``prefix=`` on a server), or a
            server's ``include`` names a tool it does not have.
        ConnectionError: a server could not be started or listed.

    Example:
        >>> MCPToolset([])
        Traceback (most recent call last):
        ...
        ValueError: MCPToolset needs at least one MCPServer

        With a server: ``MCPToolset(MCPServer(command="python my_server.py")).tools``.
    """

    def __init__(self, servers: MCPServer | Sequence[MCPServer]) -> None:
        self.servers: list[MCPServer] = (
            [servers] if isinstance(servers, MCPServer) else list(servers)
        )
        if not self.servers:
            raise ValueError("MCPToolset needs at least one MCPServer")
        self._episode: dict[int, MCPConnection] = {}
        self._closing: list[MCPConnection] = []  # ended episodes' sessions, closing
        self._spare: dict[int, MCPConnection] = {}  # started for the listing, not used yet
        self._acquired: list[MCPServer] = []
        self._closed = False
        self.tools: list[MCPTool] = []
        try:
            for server in self.servers:
                if not server.per_episode:
                    _shared.acquire(server)
                    self._acquired.append(server)
            seen: dict[str, str] = {}
            for i, server in enumerate(self.servers):
                infos, spare = _list_tools(server, keep=True)
                if spare is not None:  # the listing's session serves the first episode
                    self._spare[i] = spare
                if server.include is not None:
                    have = {t.name for t in infos}
                    missing = [n for n in server.include if n not in have]
                    if missing:
                        raise ValueError(
                            f"MCP server {server.label!r} has no tools {missing}; it has "
                            f"{sorted(have)}"
                        )
                    infos = [t for t in infos if t.name in server.include]
                for info in infos:
                    name = f"{server.prefix}_{info.name}" if server.prefix else info.name
                    name = _BAD_CHARS.sub("_", name)[:64]
                    if name in seen:
                        raise ValueError(
                            f"two MCP tools would be named {name!r} (from {seen[name]!r} and "
                            f"{server.label!r}); give the servers a prefix= to tell them apart"
                        )
                    seen[name] = server.label
                    self.tools.append(MCPTool(self, i, info, name))
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ episodes
    def start_episode(self) -> None:
        """Closes the last episode's sessions and opens fresh ones of per-episode servers.

        Raises:
            InfraError: a server could not be started (the rollout records ``infra_error``).
        """
        if self._closed:
            raise RuntimeError("this MCPToolset is closed")
        self.end_episode()
        fresh: dict[int, MCPConnection] = {}
        for i, server in enumerate(self.servers):
            if server.per_episode:
                spare = self._spare.pop(i, None)
                if spare is not None and not spare.alive:
                    spare.close_soon()
                    self._closing.append(spare)
                    spare = None
                fresh[i] = spare or MCPConnection(server)
        self._episode = fresh
        if not fresh:
            return

        async def _start_all() -> None:
            await asyncio.gather(*(c.astart() for c in fresh.values()))

        timeout = max(s.connect_timeout for s in self.servers) + 10
        try:
            _loop.run(_start_all(), timeout=timeout)
        except (ServerGone, TimeoutError, OSError) as e:
            self.end_episode()
            raise InfraError(f"an MCP server of the episode could not be started: {e}") from e

    def end_episode(self) -> None:
        """Closes the per-episode sessions in the background (servers stop right after)."""
        old, self._episode = self._episode, {}
        self._closing = [c for c in self._closing if not c.stopped]
        for conn in old.values():
            conn.close_soon()
            self._closing.append(conn)

    def close(self) -> None:
        """Closes every session this toolset opened, waiting until stdio servers stopped."""
        old, self._episode = self._episode, {}
        closing, self._closing = self._closing, []
        spare, self._spare = self._spare, {}
        for conn in [*old.values(), *closing, *spare.values()]:
            conn.close()
        acquired, self._acquired = self._acquired, []
        for server in acquired:
            _shared.release(server)
        self._closed = True

    # ------------------------------------------------------------------ calls
    async def _acall(self, tool: MCPTool, arguments: dict[str, Any]) -> str:
        """Calls ``tool`` on its session. Runs on the MCP loop."""
        server = tool.server
        try:
            if server.per_episode:
                conn = self._episode.get(tool._index)
                if conn is None:
                    raise ServerGone("no episode is running (call reset() first)")
                await conn.astart()  # no-op once started
            else:
                conn = await _shared.aget(server)
            result = await conn.acall_tool(tool.remote_name, arguments, server.call_timeout + 1)
        except ServerGone as e:
            lost = " Its state is lost; its tools cannot be used again in this episode."
            text = f"the MCP server {server.label!r} is not available: {e}." + (
                lost if server.per_episode else " The next call starts it again."
            )
            if server.on_crash == "infra_error":
                raise InfraError(text) from e
            raise MCPServerCrashed(text) from None
        if getattr(result, "is_error", False):
            raise MCPToolError(describe_result(result) or "the tool failed (no details)")
        return describe_result(result)

    def __enter__(self) -> MCPToolset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
