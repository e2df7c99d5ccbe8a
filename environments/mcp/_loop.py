"""The background event loop that owns every MCP client of this process.

MCP's client (anyio) ties a session to the task and loop that opened it, while envkit calls
tools from many loops: ``collect``'s loop, the fresh loop ``ChatEnv.step`` runs for each sync
step, worker threads. So every MCP session lives on one daemon thread's loop; callers submit
coroutines to it and wait, asynchronously (``arun``) or blocking (``run``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["arun", "loop", "run", "submit"]

_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_lock = threading.Lock()


def loop() -> asyncio.AbstractEventLoop:
    """The MCP loop, started on first use in a daemon thread named ``envkit-mcp``."""
    global _loop, _thread
    with _lock:
        if _loop is None or _thread is None or not _thread.is_alive():
            new = asyncio.new_event_loop()
            _thread = threading.Thread(target=new.run_forever, name="envkit-mcp", daemon=True)
            _thread.start()
            _loop = new
        return _loop


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedules ``coro`` on the MCP loop; cancelling the future cancels the coroutine."""
    return asyncio.run_coroutine_threadsafe(coro, loop())


async def arun(coro: Coroutine[Any, Any, T]) -> T:
    """Awaits ``coro`` run on the MCP loop from any other loop (cancellation is passed on)."""
    return await asyncio.wrap_future(submit(coro))


def run(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Runs ``coro`` on the MCP loop and blocks until it is done (or ``timeout`` passed).

    Raises:
        TimeoutError: ``timeout`` passed; the coroutine is cancelled.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        if asyncio.get_running_loop() is _loop:
            raise RuntimeError("mcp._loop.run() called on the MCP loop itself; await it instead")
    future = submit(coro)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"the MCP operation did not finish within {timeout} s") from None
