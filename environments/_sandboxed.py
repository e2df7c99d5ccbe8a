"""``SandboxedEnv``: a ``ChatEnv`` whose episode owns one sandbox taken from a pool.

The sandbox is acquired on first use in an episode (``sandbox()`` / ``await asandbox()``) and
returned to the pool by the next ``reset`` and by ``close`` (idempotent), so every episode starts
from a clean one. Sandbox failures surface as ``envkit.InfraError`` subclasses.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, ClassVar

from envkit.env import ChatEnv
from envkit.sandbox.config import SandboxConfig
from envkit.sandbox.pool import Backend, SandboxPool, shared_pool
from envkit.sandbox.registry import check_backend
from envkit.tools import ToolBox

__all__ = ["SandboxedEnv"]


class SandboxedEnv(ChatEnv):
    """Base class of envs that run code in a sandbox.

    Args:
        sandbox: Backend name from ``envkit.sandbox.registry``: ``"docker"`` (default,
            hardened containers), ``"local"`` (bubblewrap) or a registered plugin.
        sandbox_config: A ``SandboxConfig`` (or a dict of its fields) for the sandboxes.
        pool: A ``SandboxPool`` to take sandboxes from (default: the process-wide pool for
            ``sandbox`` and ``sandbox_config``).
        **kwargs: Passed to ``ChatEnv`` (``max_turns``, ``system_prompt``, ``render_mode``...).
    """

    step_in_thread = True  # sandbox calls block: always in a worker thread, never on the loop

    grader_isolated: ClassVar[bool] = False
    """Whether the reward is computed out of the policy's reach: the expected outputs never enter
    a sandbox, and whatever runs to grade runs on the host or in a clean sandbox (and process)
    that receives only the submitted artifact, never in the sandbox the policy's commands ran in.
    A subclass sets it to ``True`` only when that holds; ``envkit validate`` reports it
    (``hygiene:isolation``). See docs/sandbox.md, "Where grading runs"."""

    def __init__(
        self,
        *,
        sandbox: Backend = "docker",
        sandbox_config: SandboxConfig | Mapping[str, Any] | None = None,
        pool: SandboxPool | None = None,
        toolbox: ToolBox | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(toolbox=toolbox, **kwargs)
        check_backend(sandbox)  # the one registry of backends: raises with the names it has
        if isinstance(sandbox_config, Mapping):
            sandbox_config = SandboxConfig(**sandbox_config)
        self.sandbox_backend: Backend = sandbox
        self.sandbox_config = sandbox_config or SandboxConfig()
        self._pool = pool
        self._sandbox: Any = None
        self._sandbox_lock = threading.Lock()

    @property
    def pool(self) -> SandboxPool:
        """The pool this env takes its sandboxes from."""
        if self._pool is None:
            self._pool = shared_pool(self.sandbox_backend, self.sandbox_config)
        return self._pool

    def sandbox(self) -> Any:
        """This episode's sandbox, acquired from the pool on first use."""
        with self._sandbox_lock:
            if self._sandbox is None:
                self._sandbox = self.pool.get()
            return self._sandbox

    async def asandbox(self) -> Any:
        """Async ``sandbox()``."""
        if self._sandbox is not None:
            return self._sandbox
        from envkit.sandbox.base import run_blocking

        return await run_blocking(self.sandbox)

    def release_sandbox(self) -> None:
        """Returns this episode's sandbox to the pool (a dead one is replaced there)."""
        with self._sandbox_lock:
            sb, self._sandbox = self._sandbox, None
        if sb is not None and self._pool is not None:
            self._pool.put(sb)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        self.release_sandbox()
        return super().reset(seed=seed, options=options)

    def close(self) -> None:
        """Returns the sandbox to the pool; calling it again does nothing."""
        self.release_sandbox()
        super().close()
