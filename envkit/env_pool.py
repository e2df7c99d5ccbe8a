"""``EnvPool``: the env instances that a rollout's concurrent episodes play on.

Used by both rollout backends (``envkit.rollout`` in this process, ``envkit.ray_rollout`` on
each Ray worker). ``from envkit.rollout import EnvPool`` keeps working.

Example:
    >>> import asyncio
    >>> from envkit.env_pool import EnvPool
    >>> async def demo():
    ...     pool = EnvPool("Arithmetic-v0", size=2)
    ...     env = await pool.acquire()
    ...     pool.release(env)
    ...     await pool.aclose()
    ...     return pool.env_id, type(env).__name__
    >>> asyncio.run(demo())
    ('envkit/Arithmetic-v0', 'ArithmeticEnv')
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import gymnasium as gym

from envkit._async import to_thread
from envkit.env import ChatEnv

__all__ = ["EnvPool", "EnvSource", "unwrap_chat_env"]

EnvSource = str | ChatEnv | gym.Env | Callable[[], gym.Env]
"""What a rollout accepts as its env: an id, an instance, or a factory."""


def unwrap_chat_env(env: gym.Env) -> ChatEnv:
    """The ``ChatEnv`` under gymnasium's wrappers, or a ``TypeError`` saying what is needed."""
    inner = env.unwrapped
    if not isinstance(inner, ChatEnv):
        raise TypeError(
            f"collect() needs envkit ChatEnv environments, got {type(inner).__name__}; "
            "subclass envkit.ChatEnv"
        )
    return inner


class EnvPool:
    """Env instances for concurrent episodes: made on demand up to ``size``, reused after reset.

    An instance whose episode failed or timed out is closed (in the background) and replaced,
    since its state (a half-finished tool call, a dead sandbox) cannot be trusted.

    Args:
        source: An env id, a ``ChatEnv`` instance (more are made from its spec, or its
            ``spawn()`` when it has one, as an ``AgentEnv``; otherwise it is the only one) or a
            callable returning one.
        size: The most instances at once (the rollout's ``concurrency``).
        env_kwargs: Keyword arguments for making each env (with an id or a callable).
    """

    def __init__(self, source: EnvSource, size: int, env_kwargs: dict[str, Any] | None = None):
        if size < 1:
            raise ValueError(f"concurrency must be >= 1, got {size}")
        self._user_env: ChatEnv | None = None
        self._factory: Callable[[], ChatEnv] | None
        kwargs = dict(env_kwargs or {})
        if isinstance(source, str):
            from envkit.registration import full_id, make_chat_env, spec

            self.env_id = full_id(source)
            spec(self.env_id)  # an unknown id fails now, with gymnasium's suggestions
            self._factory = lambda: make_chat_env(source, **kwargs)
        elif isinstance(source, gym.Env):
            if kwargs:
                raise TypeError("env_kwargs cannot be applied to an env instance; pass its id")
            self._user_env = unwrap_chat_env(source)
            env_spec = source.spec or self._user_env.spec
            self.env_id = env_spec.id if env_spec else type(self._user_env).__name__
            spawn = getattr(self._user_env, "spawn", None)  # an AgentEnv makes its own kind
            if env_spec is not None:
                self._factory = lambda: unwrap_chat_env(gym.make(env_spec))
            else:
                self._factory = spawn if callable(spawn) else None
        elif callable(source):
            self._factory = lambda: unwrap_chat_env(source(**kwargs))
            self.env_id = getattr(source, "__name__", type(source).__name__)
        else:
            raise TypeError(
                "env must be an env id such as 'envkit/Arithmetic-v0', a ChatEnv instance, or a "
                f"callable that returns one; got {type(source).__name__}"
            )
        self.size = size if self._factory is not None else 1
        self._idle: asyncio.Queue[ChatEnv] = asyncio.Queue()
        self._made = 0
        self._owned: list[ChatEnv] = []
        self._background: set[asyncio.Task[Any]] = set()
        if self._user_env is not None:
            self._idle.put_nowait(self._user_env)
            self._made = 1

    async def acquire(self) -> ChatEnv:
        """An idle env, a new one while fewer than ``size`` exist, else the next released."""
        if self._idle.empty() and self._made < self.size:
            self._made += 1
            try:
                assert self._factory is not None
                env = await to_thread(self._factory)
            except BaseException:
                self._made -= 1
                raise
            self._owned.append(env)
            return env
        return await self._idle.get()

    def release(self, env: ChatEnv, *, broken: bool = False) -> None:
        """Returns ``env`` for reuse, or with ``broken=True`` closes it in the background."""
        if not broken or (env is self._user_env and self._factory is None):
            self._idle.put_nowait(env)
            return
        self._made -= 1
        if env is not self._user_env:
            self._owned.remove(env)
            task = asyncio.ensure_future(to_thread(_close_quietly, env))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        """Closes the envs this pool made (not one the caller passed in)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        envs, self._owned = self._owned, []
        await asyncio.gather(*(to_thread(_close_quietly, e) for e in envs))


def _close_quietly(env: ChatEnv) -> None:
    # Closing a broken env must not hide the episode's own error.
    with contextlib.suppress(Exception):
        env.close()
