"""Errors of the sandbox layer. Each message says what went wrong and the command that fixes it.

Failures of the machinery under an episode (daemon unreachable, container killed, image missing)
are ``envkit.errors.InfraError`` subclasses, so rollouts record ``outcome="infra_error"`` instead
of blaming the task or the model.
"""

from __future__ import annotations

from envkit.errors import EnvkitError, InfraError

__all__ = [
    "BwrapUnavailableError",
    "DockerPermissionError",
    "DockerUnavailableError",
    "ImageBuildError",
    "ImageNotFoundError",
    "IncompatibleDockerPyError",
    "PoolClosedError",
    "PoolTimeoutError",
    "SandboxClosedError",
    "SandboxDiedError",
    "SandboxError",
    "SandboxProtocolError",
    "SandboxSeccompError",
]


class SandboxError(InfraError):
    """Base class of sandbox infrastructure failures."""


class DockerUnavailableError(SandboxError):
    """The Docker daemon cannot be reached (not installed, not running, or the connection
    dropped)."""


class DockerPermissionError(SandboxError):
    """The Docker socket exists but this user may not use it."""


class ImageNotFoundError(SandboxError):
    """The sandbox image is not present locally (envkit never pulls: build it)."""


class ImageBuildError(SandboxError):
    """Building the sandbox image failed."""


class SandboxDiedError(SandboxError):
    """The sandbox's container or process disappeared while it was in use."""


class SandboxProtocolError(SandboxError):
    """The in-sandbox supervisor did not answer as expected (it crashed or was subverted)."""


class SandboxSeccompError(SandboxError):
    """The in-sandbox supervisor could not set ``no_new_privs`` or install its seccomp filter, so
    it refused to run anything (envkit never runs sandboxed code unfiltered)."""


class IncompatibleDockerPyError(SandboxError):
    """The installed docker-py lacks a private member envkit's fast exec channel relies on."""


class BwrapUnavailableError(SandboxError):
    """``bwrap`` (bubblewrap) is missing or cannot create namespaces here."""


class PoolTimeoutError(SandboxError):
    """No sandbox became free within the pool's acquire timeout."""


class PoolClosedError(SandboxError):
    """The pool was closed; no sandbox can be acquired from it any more."""


class SandboxClosedError(EnvkitError, RuntimeError):
    """A sandbox was used after ``close()`` (a bug in the caller, not an infrastructure failure)."""
