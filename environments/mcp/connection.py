"""``MCPConnection``: one live MCP client session, owned by the MCP loop.

The session is opened and closed by one task on the MCP loop (anyio requires both in the same
task); calls from any thread or loop go through ``acall``/``call``. Every open connection is
tracked, and an ``atexit`` hook closes those still open when the process exits, so no stdio
server outlives its owner (a server whose owner is killed outright sees its stdin close and
exits by itself).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import weakref
from typing import Any

from envkit.environments.mcp import _loop
from envkit.environments.mcp.server import MCPServer, require_mcp

__all__ = ["MCPConnection", "ServerGone", "close_all"]

logger = logging.getLogger("envkit.mcp")

_CLOSE_TIMEOUT = 8.0  # stdio: stdin closed, 2 s grace, SIGTERM, 2 s, SIGKILL, 2 s reap
_open: weakref.WeakSet[MCPConnection] = weakref.WeakSet()
_open_lock = threading.Lock()


def describe_error(e: BaseException) -> str:
    """``Type: message`` of ``e``, or of the first real error inside anyio's exception groups."""
    while isinstance(getattr(e, "exceptions", None), tuple) and e.exceptions:  # type: ignore[attr-defined]
        e = e.exceptions[0]  # type: ignore[attr-defined]
    return f"{type(e).__name__}: {e}"


class ServerGone(RuntimeError):
    """The server closed the connection (it crashed or exited) or could not be started."""


class MCPConnection:
    """A client session to ``server``, opened by ``start`` and closed by ``close``.

    Example:
        >>> from envkit.environments.mcp import MCPServer
        >>> conn = MCPConnection(MCPServer(url="http://127.0.0.1:9/mcp"))
        >>> conn.state
        'new'
    """

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self.state = "new"  # new -> ready -> (dead) -> closed
        self.error: str | None = None
        self._client: Any = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._start_lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------ on the MCP loop
    async def _main(self, ready: asyncio.Future[None]) -> None:
        require_mcp()
        from mcp import Client

        stop = self._stop
        assert stop is not None
        try:
            client = Client(self.server.open_transport(), mode=self.server.mode, cache=None)
            async with client:
                self._client = client
                if not ready.done():
                    ready.set_result(None)
                await stop.wait()
        except BaseException as e:
            if not ready.done():
                ready.set_exception(e if isinstance(e, Exception) else RuntimeError(repr(e)))
            elif not stop.is_set():
                logger.debug("MCP session to %s ended: %r", self.server.label, e)
            if isinstance(e, asyncio.CancelledError):
                raise
        finally:
            self._client = None
            if self.state != "dead":
                self.state = "closed"
            with _open_lock:
                _open.discard(self)

    async def astart(self) -> None:
        """Starts the server (stdio) and runs the MCP handshake. Runs on the MCP loop.

        Raises:
            ServerGone: it did not start or answer within ``connect_timeout``.
        """
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self.state != "new":
                return
            self._stop = asyncio.Event()
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            with _open_lock:
                _open.add(self)
            self._task = asyncio.ensure_future(self._main(ready))
            timeout = self.server.connect_timeout
            try:
                await asyncio.wait_for(asyncio.shield(ready), timeout)
            except BaseException as e:
                # Cancel the half-open session: the transport's shielded shutdown still stops a
                # stdio server (stdin closed, SIGTERM, SIGKILL to its process group).
                self._stop.set()
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=_CLOSE_TIMEOUT)
                self.state = "dead"
                self.error = (
                    f"did not start within {timeout} s"
                    if isinstance(e, (TimeoutError, asyncio.TimeoutError))
                    else describe_error(e)
                )
                if isinstance(e, asyncio.CancelledError):
                    raise
                raise ServerGone(
                    f"MCP server {self.server.label!r} could not be started: {self.error}"
                ) from e
            self.state = "ready"

    async def alist_tools(self) -> list[Any]:
        """All tools of the server (every page). Runs on the MCP loop."""
        client = self._ready_client()
        tools: list[Any] = []
        cursor: str | None = None
        for _ in range(1000):
            page = await asyncio.wait_for(
                client.list_tools(cursor=cursor), self.server.connect_timeout
            )
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def acall_tool(self, name: str, arguments: dict[str, Any], timeout: float) -> Any:
        """Calls a tool; returns the ``CallToolResult``. Runs on the MCP loop.

        Raises:
            ServerGone: the server is (or went) away.
            TimeoutError: no answer within ``timeout`` seconds (the request is cancelled).
            mcp.shared.exceptions.MCPError: a protocol error the server answered with.
        """
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        client = self._ready_client()
        try:
            return await client.call_tool(name, arguments, read_timeout_seconds=timeout)
        except MCPError as e:
            if e.code == REQUEST_TIMEOUT:
                raise TimeoutError(f"no answer within {timeout} s") from None
            if e.code == CONNECTION_CLOSED:
                self._mark_dead(
                    "the connection closed during a call (the server crashed or exited)"
                )
                raise ServerGone(self.error) from None
            raise
        except (OSError, EOFError) as e:
            self._mark_dead(describe_error(e))
            raise ServerGone(self.error) from e
        except Exception as e:
            # Transport failures surface as anyio stream errors or httpx errors.
            if type(e).__module__.split(".")[0] in {"anyio", "httpx", "httpx2", "httpcore"}:
                self._mark_dead(describe_error(e))
                raise ServerGone(self.error) from e
            raise

    async def aclose(self) -> None:
        """Ends the session and stops a stdio server (waits for it). Runs on the MCP loop."""
        if self._stop is not None:
            self._stop.set()
        task = self._task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), _CLOSE_TIMEOUT)
            except (asyncio.TimeoutError, TimeoutError):
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            except Exception:
                pass
        if self.state != "dead":
            self.state = "closed"

    def _ready_client(self) -> Any:
        if self.state == "dead" or (self.state == "ready" and self._client is None):
            if self.state != "dead":
                self._mark_dead("the server closed the connection")
            raise ServerGone(self.error or "the server is gone")
        if self._client is None:
            raise ServerGone(f"the session is {self.state}")
        return self._client

    def _mark_dead(self, why: str) -> None:
        if self.state != "dead":
            self.state = "dead"
            self.error = why
            if self._stop is not None:
                self._stop.set()  # let _main close the transport (reaps the process)

    # ------------------------------------------------------------------ from anywhere
    def close(self) -> None:
        """Closes the session from sync code and waits (bounded) until the server stopped."""
        if self._task is None or self._task.done():
            return
        try:
            _loop.run(self.aclose(), timeout=_CLOSE_TIMEOUT + 2)
        except TimeoutError:
            logger.warning("MCP server %s did not stop in time", self.server.label)

    def close_soon(self) -> None:
        """Starts closing the session without waiting (episode ends; the env goes on)."""
        if self._task is not None and not self._task.done():
            _loop.submit(self.aclose())

    @property
    def stopped(self) -> bool:
        """Whether the session's task (and a stdio server with it) has finished."""
        return self._task is None or self._task.done()

    @property
    def alive(self) -> bool:
        """Whether the session is open and usable."""
        return self.state == "ready" and self._client is not None


def close_all(timeout: float = _CLOSE_TIMEOUT + 2) -> None:
    """Closes every open MCP connection of this process (runs at exit)."""
    with _open_lock:
        conns = list(_open)
    if not conns:
        return

    async def _all() -> None:
        await asyncio.gather(*(c.aclose() for c in conns), return_exceptions=True)

    try:
        _loop.run(_all(), timeout=timeout)
    except Exception as e:
        logger.warning("closing MCP servers at exit failed: %r", e)


atexit.register(close_all)
