"""Sandboxes that run untrusted (model-written) code safely, fast and without leaks.

* ``DockerSandbox``: a hardened container (no network, no capabilities, non-root, read-only root,
  tmpfs work dir, memory/pids/CPU limits) driven through docker-py.
* ``LocalSandbox``: bubblewrap namespaces, for machines without a Docker daemon.
* ``SandboxPool``: warm sandboxes; ``async with pool.acquire() as sb`` gives a clean one per
  episode.
* ``envkit sandbox build | doctor | cleanup``: build the image, diagnose the setup, remove
  leftovers.

Every backend follows the ``Sandbox`` protocol: ``exec`` / ``write_files`` / ``read_file`` /
``close``, their async twins ``aexec`` / ``awrite_files`` / ``aread_file`` / ``aclose``, and what
pools use (``closed``, ``broken``, ``uses``, ``created_at``, ``alive()``, ``reset()``). Backends
are chosen by name from one registry (``register_backend``, entry-point group
``envkit.sandboxes``).

Example:
    >>> import asyncio
    >>> from envkit.sandbox import SandboxPool
    >>> async def main():
    ...     async with SandboxPool(size=2) as pool, pool.acquire() as sb:
    ...         return (await sb.aexec("echo hi", timeout=5)).stdout
    >>> asyncio.run(main())
    'hi\\n'
"""

from __future__ import annotations

from envkit.sandbox.base import Sandbox
from envkit.sandbox.config import DEFAULT_IMAGE, Mount, SandboxConfig
from envkit.sandbox.docker_sandbox import DockerSandbox
from envkit.sandbox.errors import (
    BwrapUnavailableError,
    DockerPermissionError,
    DockerUnavailableError,
    ImageBuildError,
    ImageNotFoundError,
    PoolClosedError,
    PoolTimeoutError,
    SandboxClosedError,
    SandboxDiedError,
    SandboxError,
)
from envkit.sandbox.local_sandbox import LocalSandbox
from envkit.sandbox.pool import SandboxPool, shared_pool
from envkit.sandbox.registry import backend_names, make_sandbox, register_backend
from envkit.sandbox.result import ExecResult
from envkit.sandbox.supervised import SandboxFileError

__all__ = [
    "DEFAULT_IMAGE",
    "BwrapUnavailableError",
    "DockerPermissionError",
    "DockerSandbox",
    "DockerUnavailableError",
    "ExecResult",
    "ImageBuildError",
    "ImageNotFoundError",
    "LocalSandbox",
    "Mount",
    "PoolClosedError",
    "PoolTimeoutError",
    "Sandbox",
    "SandboxClosedError",
    "SandboxConfig",
    "SandboxDiedError",
    "SandboxError",
    "SandboxFileError",
    "SandboxPool",
    "backend_names",
    "make_sandbox",
    "register_backend",
    "shared_pool",
]
