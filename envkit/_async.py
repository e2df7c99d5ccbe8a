"""Helpers to call coroutines from synchronous code, also when an event loop is running."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def executor() -> concurrent.futures.ThreadPoolExecutor:
    """The thread pool that runs envkit's blocking work (env steps, sync tools, env factories).

    asyncio's default executor has ``min(32, cpus + 4)`` threads (6 on a 2-core machine), which
    would cap how many env steps of a rollout overlap; this pool grows on demand up to
    ``ENVKIT_MAX_THREADS`` (default 256) threads. It is not the loop's default executor, so
    ``asyncio.run`` does not wait at exit for a sync tool that overran its timeout.
    """
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=int(os.environ.get("ENVKIT_MAX_THREADS", "256")),
                    thread_name_prefix="envkit",
                )
    return _executor


async def to_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Like ``asyncio.to_thread``, but on envkit's thread pool (see :func:`executor`)."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await loop.run_in_executor(executor(), call)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Runs ``coro`` to completion and returns its result.

    Uses ``asyncio.run`` when no loop runs in this thread; inside a running loop (a notebook, an
    async test) it runs the coroutine on a fresh loop in a worker thread instead of failing.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
