"""Errors envkit raises. Each message says what was wrong and how to fix it."""

from __future__ import annotations

__all__ = [
    "EnvkitError",
    "EpisodeOverError",
    "InfraError",
    "InvalidActionError",
]


class EnvkitError(Exception):
    """Base class of envkit's own errors."""


class InvalidActionError(EnvkitError, ValueError):
    """An action given to ``ChatEnv.step`` does not have the shape of an assistant turn."""


class EpisodeOverError(EnvkitError, RuntimeError):
    """``step`` was called after the episode had terminated or been truncated."""


class InfraError(EnvkitError, RuntimeError):
    """The infrastructure under an environment failed (sandbox killed, daemon unreachable...).

    Rollouts record an episode that raised it with ``outcome="infra_error"`` rather than
    ``env_error``, so a training loop can tell a broken machine from a broken task.
    """
