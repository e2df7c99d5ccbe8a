"""OpenEnv environments played as envkit chat environments (``envkit.environments.openenv``).

``OpenEnvChatEnv`` speaks OpenEnv's WebSocket protocol to a server reached by URL, started from
a command, or run from a local Docker image; ``register_openenv`` puts one under an envkit id so
``envkit.make``, ``gymnasium.make`` and the CLI (``check``, ``collect``, ``eval``, ``train`` with
``--import``) can use it. The client side needs only ``websockets`` (an envkit dependency);
serving envkit envs to OpenEnv clients is ``envkit.serving.openenv_server``.

Example::

    import envkit
    from envkit.environments.openenv import register_openenv

    register_openenv("MyGame-v0", url="http://127.0.0.1:8000", max_turns=8)
    env = envkit.make("MyGame-v0")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envkit.registration import register

__all__ = ["OpenEnvChatEnv", "register_openenv"]

ENTRY_POINT = "envkit.environments.openenv.env:OpenEnvChatEnv"


def register_openenv(
    id: str,
    *,
    url: str | None = None,
    command: str | Sequence[str] | None = None,
    image: str | None = None,
    override: bool = False,
    **kwargs: Any,
) -> str:
    """Registers an OpenEnv server as an envkit env (``envkit/<id>`` unless namespaced).

    Args:
        id: The env id, e.g. ``"Echo-v0"``.
        url: A running server (see ``OpenEnvChatEnv``); or
        command: a command that starts one (with ``{port}``); or
        image: a local Docker image that runs one.
        override: Replace an existing registration of ``id``.
        **kwargs: More ``OpenEnvChatEnv`` arguments (``prompt``, ``max_turns``, ...).

    Returns:
        The full id.
    """
    given = [n for n, v in (("url", url), ("command", command), ("image", image)) if v]
    if len(given) != 1:
        raise ValueError(f"register_openenv needs exactly one of url=, command=, image= ({given})")
    source = {
        "url": url,
        "command": list(command) if isinstance(command, (list, tuple)) else command,
        "image": image,
    }
    kw = {k: v for k, v in source.items() if v is not None}
    return register(id, ENTRY_POINT, kwargs={**kw, **kwargs}, override=override)


def __getattr__(name: str) -> Any:
    if name == "OpenEnvChatEnv":
        from envkit.environments.openenv.env import OpenEnvChatEnv

        return OpenEnvChatEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
