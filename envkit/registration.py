"""The envkit namespace in gymnasium's registry, and third-party plug-ins.

envkit uses gymnasium's own registry: ``envkit.register("Maze-v0", ...)`` registers
``envkit/Maze-v0``, and both ``gymnasium.make("envkit/Maze-v0")`` and ``envkit.make("Maze-v0")``
build it. Bundled envs are registered by entry-point string when ``envkit`` is imported, so their
modules are imported only when made.

Third-party packages register envs without any code running at import time, through the entry
point group ``envkit.environments`` in their ``pyproject.toml``; the entry point's name is the env
id (put in the ``envkit/`` namespace unless it names its own) and its value the env class::

    [project.entry-points."envkit.environments"]
    "Maze-v0" = "my_package.maze:MazeEnv"

Example:
    >>> import envkit
    >>> env = envkit.make("Arithmetic-v0", max_turns=2)
    >>> env.spec.id
    'envkit/Arithmetic-v0'
"""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec, parse_env_id

__all__ = [
    "ENTRY_POINT_GROUP",
    "NAMESPACE",
    "full_id",
    "load_lazy",
    "load_plugins",
    "make",
    "make_chat_env",
    "register",
    "registered_ids",
    "spec",
]

NAMESPACE = "envkit"
ENTRY_POINT_GROUP = "envkit.environments"

# The bundled environments: id -> (entry point, default kwargs).
BUNDLED: dict[str, tuple[str, dict[str, Any]]] = {
    "Arithmetic-v0": ("envkit.environments.arithmetic:ArithmeticEnv", {}),
    "Countdown-v0": ("envkit.environments.countdown:CountdownEnv", {}),
    "GuessNumber-v0": ("envkit.environments.guess_number:GuessNumberEnv", {}),
    "PythonCoding-v0": ("envkit.environments.python_coding:PythonCodingEnv", {}),
    "PythonTools-v0": ("envkit.environments.python_tools:PythonToolsEnv", {}),
}

# Env families registered on first use, because listing them imports a heavy package:
# id prefix -> "module:function" that registers the family and returns its ids.
LAZY_FAMILIES: dict[str, str] = {
    "envkit/rg-": "envkit.environments.reasoning_gym:register_envs",
}


def full_id(env_id: str) -> str:
    """Puts an id without a namespace into ``envkit/``: ``"Maze-v0"`` -> ``"envkit/Maze-v0"``."""
    if not isinstance(env_id, str) or not env_id:
        raise TypeError(f"an env id must be a non-empty string, got {env_id!r}")
    return env_id if "/" in env_id else f"{NAMESPACE}/{env_id}"


def register(
    id: str,
    entry_point: str | Callable[..., gym.Env],
    *,
    kwargs: dict[str, Any] | None = None,
    override: bool = False,
    **spec_kwargs: Any,
) -> str:
    """Registers an environment under ``envkit/<id>`` (or the namespace ``id`` names).

    Args:
        id: ``"Name-vN"``; the version suffix is required.
        entry_point: ``"module.path:ClassName"`` (imported only when made) or a callable.
        kwargs: Default keyword arguments of the env's constructor (``make`` may override them).
        override: Replace an existing registration with the same id instead of failing.
        **spec_kwargs: Passed to ``gymnasium.register`` (e.g. ``additional_wrappers``).

    Returns:
        The full id, e.g. ``"envkit/Maze-v0"``.

    Raises:
        gymnasium.error.Error: ``id`` has no version or is already registered (without override).
    """
    fid = full_id(id)
    if parse_env_id(fid)[2] is None:
        raise gym.error.Error(
            f"Env id {fid!r} has no version; envkit ids are versioned, e.g. {fid}-v0. Bump the "
            "version when a change would alter rewards or tasks for the same seed."
        )
    if fid in gym.registry and not override:
        existing = gym.registry[fid]
        if existing.entry_point == entry_point and existing.kwargs == (kwargs or {}):
            return fid  # the same registration again (a module imported twice) is harmless
        raise gym.error.Error(
            f"{fid!r} is already registered (entry point {existing.entry_point!r}, kwargs "
            f"{existing.kwargs}); pick another id or pass override=True."
        )
    if fid in gym.registry:
        del gym.registry[fid]
    gym.register(id=fid, entry_point=entry_point, kwargs=kwargs or {}, **spec_kwargs)
    return fid


def load_lazy(env_id: str | None = None) -> list[str]:
    """Registers the env families of ``LAZY_FAMILIES`` (all, or the one ``env_id`` is in).

    ``make``, ``spec`` and the CLI call it, so ``envkit.make("rg-basic_arithmetic-v0")`` works
    without registering reasoning-gym's hundred envs at ``import envkit``. Listing all families
    skips those whose package is not installed; asking for one id of such a family raises.

    Returns:
        The ids registered (or already there) of the families loaded.

    Raises:
        gymnasium.error.DependencyNotInstalled: ``env_id``'s family needs a missing package.
    """
    import importlib

    fid = None if env_id is None else full_id(env_id)
    if fid is not None and fid in gym.registry:
        return []
    ids: list[str] = []
    for prefix, target in LAZY_FAMILIES.items():
        if fid is not None and not fid.startswith(prefix):
            continue
        module, _, attr = target.partition(":")
        try:
            ids += getattr(importlib.import_module(module), attr)()
        except gym.error.DependencyNotInstalled:
            if fid is not None:
                raise
    return ids


def make(id: str | EnvSpec, **kwargs: Any) -> gym.Env:
    """Builds a registered env like ``gymnasium.make``; ids without a namespace mean ``envkit/``.

    Unknown ids raise gymnasium's errors, which suggest close names.
    """
    if isinstance(id, EnvSpec):
        return gym.make(id, **kwargs)
    load_lazy(id)
    return gym.make(full_id(id), **kwargs)


def make_chat_env(id: str, **kwargs: Any) -> Any:
    """Like ``make`` but returns the unwrapped ``ChatEnv`` (for rollouts and async use)."""
    from envkit.env import ChatEnv

    env = make(id, **kwargs).unwrapped
    if not isinstance(env, ChatEnv):
        raise TypeError(f"{id!r} is a {type(env).__name__}, not an envkit.ChatEnv")
    return env


def spec(id: str) -> EnvSpec:
    """The registry entry of an env id (ids without a namespace mean ``envkit/``)."""
    load_lazy(id)
    return gym.spec(full_id(id))


def registered_ids(namespace: str | None = NAMESPACE) -> list[str]:
    """Ids in gymnasium's registry from ``namespace`` (all namespaces when ``None``), sorted."""
    ids = gym.registry.keys()
    if namespace is not None:
        ids = (i for i in ids if i.startswith(f"{namespace}/"))
    return sorted(ids)


def load_plugins() -> list[str]:
    """Registers the envs that installed packages declare in the ``envkit.environments`` group.

    Nothing is imported: each entry point's value is registered as a string entry point.
    Returns the ids registered.
    """
    registered = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            fid = full_id(ep.name)
            if fid in gym.registry:
                continue
            registered.append(register(fid, ep.value))
        except (gym.error.Error, TypeError) as e:
            # A broken plug-in must not break `import envkit` for everyone else.
            warnings.warn(
                f"envkit: skipping the {ENTRY_POINT_GROUP!r} entry point {ep.name!r} = "
                f"{ep.value!r} of {getattr(ep.dist, 'name', '?')}: {e}",
                stacklevel=2,
            )
    return registered


def register_bundled() -> None:
    """Registers the environments that ship with envkit (called by ``import envkit``)."""
    for env_id, (entry_point, kwargs) in BUNDLED.items():
        fid = full_id(env_id)
        if fid not in gym.registry:
            gym.register(id=fid, entry_point=entry_point, kwargs=kwargs)
