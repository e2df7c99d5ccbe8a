"""``SandboxPool``: warm sandboxes handed out one episode at a time.

``pool.acquire()`` gives a sandbox that nothing ran in since it was cleaned: when an episode
releases it, the pool kills every process of the sandbox user and empties the writable
directories in the background, checks the result, and only then hands it out again; a sandbox
that died, failed its check, was used ``max_uses`` times or nears its lifetime is destroyed and
replaced. When all ``size`` sandboxes are busy, ``acquire`` waits (back-pressure).

Example:
    >>> import asyncio
    >>> from envkit.sandbox.pool import SandboxPool
    >>> async def main():
    ...     async with SandboxPool(size=2) as pool:
    ...         async with pool.acquire() as sb:
    ...             return (await sb.aexec("echo hi", timeout=5)).stdout
    >>> asyncio.run(main())
    'hi\\n'
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from envkit.sandbox import reaper
from envkit.sandbox.base import Sandbox, run_blocking
from envkit.sandbox.config import SandboxConfig
from envkit.sandbox.errors import PoolClosedError, PoolTimeoutError
from envkit.sandbox.registry import check_backend, make_sandbox

__all__ = [
    "Backend",
    "PoolStats",
    "SandboxPool",
    "close_shared_pools",
    "make_sandbox",
    "shared_pool",
]

Backend = str
"""A backend name from ``envkit.sandbox.registry`` (``"docker"``, ``"local"``, or a plugin's)."""


class PoolStats:
    """Counters of a pool's life (for logs and benchmarks)."""

    def __init__(self) -> None:
        self.created = 0
        self.recycled = 0
        self.replaced = 0
        self.acquired = 0
        self.waits = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class _Lease:
    """What ``acquire()`` returns: a sync and async context manager around one sandbox."""

    def __init__(self, pool: SandboxPool, timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._sandbox: Any = None

    def __enter__(self) -> Any:
        self._sandbox = self._pool.get(timeout=self._timeout)
        return self._sandbox

    def __exit__(self, *exc: object) -> None:
        self._pool.put(self._sandbox)

    async def __aenter__(self) -> Any:
        self._sandbox = await self._pool.aget(timeout=self._timeout)
        return self._sandbox

    async def __aexit__(self, *exc: object) -> None:
        self._pool.put(self._sandbox)


class SandboxPool:
    """A bounded pool of warm, clean sandboxes.

    Args:
        config: The configuration of every sandbox.
        size: Most sandboxes alive at once (busy + idle + being cleaned).
        backend: A name from ``envkit.sandbox.registry``: ``"docker"`` (default), ``"local"``
            (bubblewrap) or a registered plugin.
        max_uses: Replace a sandbox after this many episodes.
        acquire_timeout: Default seconds ``acquire`` waits for a free sandbox (``None``: forever).
        check_on_acquire: Check that an idle sandbox is still alive before handing it out.
        factory: Creates a sandbox (overrides ``backend``).
    """

    is_pool = True

    def __init__(
        self,
        config: SandboxConfig | None = None,
        size: int = 4,
        *,
        backend: Backend = "docker",
        max_uses: int = 500,
        acquire_timeout: float | None = None,
        check_on_acquire: bool = True,
        factory: Callable[[], Sandbox] | None = None,
    ) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        if max_uses < 1:
            raise ValueError(f"max_uses must be >= 1, got {max_uses}")
        if factory is None:
            check_backend(backend)
        self.config = config if config is not None else SandboxConfig()
        self.size = size
        self.backend = backend
        self.max_uses = max_uses
        self.acquire_timeout = acquire_timeout
        self.check_on_acquire = check_on_acquire
        self._factory = factory or (lambda: make_sandbox(backend, self.config))
        self.stats = PoolStats()
        self._cond = threading.Condition()
        self._idle: deque[Sandbox] = deque()
        self._busy: set[Sandbox] = set()
        self._pending = 0  # being created or cleaned
        self._closed = False
        self.last_error: BaseException | None = None
        self._workers = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(size, 8), thread_name_prefix="envkit-pool"
        )
        reaper.track(self)

    # ------------------------------------------------------------------ properties
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def idle(self) -> int:
        """Sandboxes ready to be handed out."""
        with self._cond:
            return len(self._idle)

    @property
    def busy(self) -> int:
        """Sandboxes handed out and not yet released."""
        with self._cond:
            return len(self._busy)

    def _total(self) -> int:
        return len(self._idle) + len(self._busy) + self._pending

    # ------------------------------------------------------------------ warm-up
    def start(self, n: int | None = None) -> SandboxPool:
        """Creates sandboxes until ``n`` (default ``size``) are alive; blocks until they are.

        Raises:
            SandboxError: a sandbox could not be created (the first error).
        """
        n = self.size if n is None else min(n, self.size)
        with self._cond:
            self._check_open()
            missing = max(0, n - self._total())
            self._pending += missing
        futures = [self._workers.submit(self._create) for _ in range(missing)]
        errors = [f.exception() for f in futures]
        for e in errors:
            if e is not None:
                raise e
        return self

    async def astart(self, n: int | None = None) -> SandboxPool:
        """Async ``start``."""
        return await run_blocking(self.start, n)

    def _create(self) -> None:
        """Creates one sandbox into the idle queue (``_pending`` was counted by the caller)."""
        try:
            sb = self._factory()
        except BaseException as e:
            with self._cond:
                self._pending -= 1
                self.last_error = e
                self._cond.notify_all()
            raise
        with self._cond:
            self._pending -= 1
            self.stats.created += 1
            if self._closed:
                sb.close()
                return
            self._idle.append(sb)
            self._cond.notify()

    # ------------------------------------------------------------------ acquire / release
    def _check_open(self) -> None:
        if self._closed:
            raise PoolClosedError("The sandbox pool is closed; create a new SandboxPool.")

    def _usable(self, sb: Sandbox) -> bool:
        if sb.closed or sb.broken is not None:
            return False
        lifetime_left = self.config.lifetime - (time.monotonic() - sb.created_at)
        return lifetime_left > max(120.0, 0.1 * self.config.lifetime)

    def get(self, timeout: float | None = None) -> Sandbox:
        """Takes a clean sandbox, waiting while all are busy. Release it with ``put``.

        Raises:
            PoolTimeoutError: none became free within ``timeout`` (default ``acquire_timeout``).
            PoolClosedError: the pool was closed.
            SandboxError: a sandbox had to be created and creation failed.
        """
        timeout = self.acquire_timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        waited = False
        while True:
            with self._cond:
                self._check_open()
                sb, create = self._take_or_reserve(deadline, waited)
                waited = True
            if create:
                try:
                    sb = self._factory()
                except BaseException:
                    with self._cond:
                        self._pending -= 1
                        self._cond.notify_all()
                    raise
                with self._cond:
                    self._pending -= 1
                    self.stats.created += 1
                    self._busy.add(sb)
            elif self.check_on_acquire and not sb.alive():
                with self._cond:
                    self._busy.discard(sb)
                    self._retire_locked(sb)
                continue
            with self._cond:
                if self._closed:
                    self._busy.discard(sb)
                    sb.close()
                    self._check_open()
                self.stats.acquired += 1
            sb.uses += 1
            return sb

    def _take_or_reserve(self, deadline: float | None, waited: bool) -> tuple[Any, bool]:
        """Under the lock: an idle sandbox, or a reserved slot to create one, or wait."""
        counted_wait = waited
        while True:
            self._check_open()
            while self._idle:
                sb = self._idle.popleft()
                if self._usable(sb):
                    self._busy.add(sb)  # counted from now on, while its health is checked
                    return sb, False
                self._retire_locked(sb)
            if self._total() < self.size:
                self._pending += 1
                return None, True
            if not counted_wait:
                self.stats.waits += 1
                counted_wait = True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise PoolTimeoutError(
                    f"No sandbox became free within the acquire timeout ({len(self._busy)} busy, "
                    f"size={self.size}). Release sandboxes (use `with pool.acquire()`), raise "
                    "size, or raise acquire_timeout."
                )
            self._cond.wait(remaining)

    def _retire_locked(self, sb: Sandbox) -> None:
        """Destroys a sandbox in the background and frees its slot (caller holds the lock)."""
        self._pending += 1
        self.stats.replaced += 1
        self._workers.submit(self._retire, sb)

    def _retire(self, sb: Sandbox) -> None:
        with contextlib.suppress(Exception):
            sb.close()
        with self._cond:
            self._pending -= 1
            self._cond.notify_all()

    def put(self, sb: Sandbox | None) -> None:
        """Releases a sandbox; it is cleaned (or replaced) in the background. Idempotent."""
        if sb is None:
            return
        with self._cond:
            if sb not in self._busy:
                return
            self._busy.discard(sb)
            closed = self._closed
            if not closed:
                self._pending += 1
        if closed:
            sb.close()
            return
        try:
            self._workers.submit(self._recycle, sb)
        except RuntimeError:  # executor shut down concurrently
            with self._cond:
                self._pending -= 1
            sb.close()

    def _recycle(self, sb: Sandbox) -> None:
        """Cleans a released sandbox back into the idle queue, or replaces it with a new one."""
        clean = self._usable(sb) and sb.uses < self.max_uses and sb.reset()
        with self._cond:
            if clean and not self._closed:
                self._pending -= 1
                self._idle.append(sb)
                self.stats.recycled += 1
                self._cond.notify()
                return
            if not self._closed:
                self.stats.replaced += 1
        with contextlib.suppress(Exception):
            sb.close()
        # The slot stays reserved (still counted in _pending) for its replacement, so the pool
        # stays warm; _create frees it whether or not creation works.
        if self._closed:
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()
            return
        with contextlib.suppress(BaseException):
            self._create()

    def acquire(self, timeout: float | None = None) -> _Lease:
        """A context manager (``with`` or ``async with``) that gives a clean sandbox and releases
        it at the end of the block."""
        return _Lease(self, timeout)

    async def aget(self, timeout: float | None = None) -> Sandbox:
        """Async ``get``. Cancelling the wait never loses a sandbox."""
        loop = asyncio.get_running_loop()
        from envkit.sandbox.base import _executor

        fut = loop.run_in_executor(_executor(), self.get, timeout)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            fut.add_done_callback(
                lambda f: self.put(f.result()) if not f.cancelled() and not f.exception() else None
            )
            raise

    async def aput(self, sb: Any) -> None:
        """Async ``put``."""
        self.put(sb)

    # ------------------------------------------------------------------ close
    def close(self) -> None:
        """Destroys every sandbox of the pool (busy ones too) and refuses new acquisitions."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            victims = list(self._idle) + list(self._busy)
            self._idle.clear()
            self._busy.clear()
            self._cond.notify_all()
        reaper.untrack(self)
        self._workers.shutdown(wait=True, cancel_futures=False)
        reaper._parallel(lambda sb: sb.close(), victims)

    async def aclose(self) -> None:
        """Async ``close``."""
        await run_blocking(self.close)

    def __enter__(self) -> SandboxPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> SandboxPool:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"SandboxPool(backend={self.backend!r}, size={self.size}, idle={len(self._idle)}, "
            f"busy={len(self._busy)}, closed={self._closed})"
        )


_SHARED: dict[tuple[str, str], SandboxPool] = {}
_SHARED_LOCK = threading.Lock()


def shared_pool(
    backend: Backend = "docker", config: SandboxConfig | None = None, size: int | None = None
) -> SandboxPool:
    """The process-wide pool for ``(backend, config)``, created on first use (lazily warm).

    ``size`` defaults to ``$ENVKIT_SANDBOX_POOL_SIZE`` or 8; it is fixed by the first call.
    """
    config = config if config is not None else SandboxConfig()
    key = (backend, config.model_dump_json())
    with _SHARED_LOCK:
        pool = _SHARED.get(key)
        if pool is None or pool.closed:
            size = size or int(os.environ.get("ENVKIT_SANDBOX_POOL_SIZE", "8"))
            pool = SandboxPool(config, size, backend=backend)
            _SHARED[key] = pool
        return pool


def close_shared_pools() -> None:
    """Closes the process-wide pools (they are also closed at exit)."""
    with _SHARED_LOCK:
        pools = list(_SHARED.values())
        _SHARED.clear()
    for p in pools:
        p.close()
