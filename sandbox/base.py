"""The ``Sandbox`` protocol (the contract pools and envs rely on) and the shared executor for
blocking sandbox calls."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from envkit.sandbox.result import ExecResult

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Command", "Sandbox", "run_blocking"]

T = TypeVar("T")
Command = str | Sequence[str]
"""A shell command line (run with ``/bin/sh -c``) or an argv list (run directly)."""

_EXECUTOR: concurrent.futures.ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    # Sandbox calls block on sockets, not on CPU: many may wait at once, more than the default
    # executor (cpu_count + 4 threads) allows without starving other asyncio.to_thread users.
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = concurrent.futures.ThreadPoolExecutor(
                max_workers=128, thread_name_prefix="envkit-sandbox"
            )
        return _EXECUTOR


async def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Runs a blocking sandbox call in envkit's sandbox thread pool and awaits it."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(fn, *args, **kwargs))


@runtime_checkable
class Sandbox(Protocol):
    """An isolated place to run untrusted commands, with a sync and an async face.

    This is the whole contract ``SandboxPool`` and the sandboxed environments use; a backend
    registered in ``envkit.sandbox.registry`` must provide all of it. Implementations:
    ``DockerSandbox`` (hardened containers) and ``LocalSandbox`` (bubblewrap), both on top of
    ``SupervisedSandbox``.

    Attributes:
        uses: How many times a pool handed this sandbox out (the pool increments it).
        created_at: ``time.monotonic()`` when it was created (pools retire old ones).

    Example:
        >>> from envkit.sandbox import DockerSandbox
        >>> with DockerSandbox() as sb:
        ...     sb.write_files({"a.py": "print(6 * 7)"})
        ...     sb.exec("python3 a.py", timeout=5).stdout
        '42\\n'
    """

    uses: int
    created_at: float

    @property
    def closed(self) -> bool:
        """True after ``close()``."""
        ...

    @property
    def broken(self) -> str | None:
        """Why it must not be used again (a pool then replaces it), or ``None``."""
        ...

    def alive(self) -> bool:
        """True while it can run commands (cheap: a pool asks before each hand-out)."""
        ...

    def reset(self) -> bool:
        """Makes it clean for a new episode; returns whether that is proven (else a pool
        replaces it). Never raises for what sandboxed code did."""
        ...

    def exec(
        self,
        cmd: Command,
        *,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        """Runs a command; its whole process tree is killed when ``timeout`` expires."""
        ...

    def write_files(
        self, files: Mapping[str, str | bytes], *, timeout: float | None = None
    ) -> None:
        """Writes regular files (paths relative to the work dir, or absolute), creating parents."""
        ...

    def read_file(self, path: str, *, timeout: float | None = None) -> bytes:
        """Returns a regular file's content (raises ``FileNotFoundError`` if it does not exist)."""
        ...

    def close(self) -> None:
        """Destroys the sandbox; calling it again does nothing."""
        ...

    # The async twins and context managers below are real: a backend that subclasses
    # ``Sandbox`` explicitly (``SupervisedSandbox`` does) inherits them, so each is written once.
    async def aexec(
        self,
        cmd: Command,
        *,
        timeout: float | None = None,
        stdin: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> ExecResult:
        """Async ``exec`` (runs in envkit's sandbox thread pool)."""
        return await run_blocking(
            self.exec, cmd, timeout=timeout, stdin=stdin, env=env, workdir=workdir
        )

    async def awrite_files(
        self, files: Mapping[str, str | bytes], *, timeout: float | None = None
    ) -> None:
        """Async ``write_files``."""
        await run_blocking(self.write_files, files, timeout=timeout)

    async def aread_file(self, path: str, *, timeout: float | None = None) -> bytes:
        """Async ``read_file``."""
        return await run_blocking(self.read_file, path, timeout=timeout)

    async def aclose(self) -> None:
        """Async ``close``."""
        await run_blocking(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
