"""Serve any envkit env over OpenEnv's protocol (``envkit serve-env``), with openenv's own server.

``build_app(env_id, **kwargs)`` returns openenv-core's FastAPI app (``create_app``) over
``EnvkitEnvironment``, an ``openenv`` ``Environment`` that wraps one envkit ``ChatEnv``. So the
routes and the WebSocket session protocol are exactly OpenEnv's: ``/ws`` (one env per session),
``/reset``, ``/step``, ``/state``, ``/schema``, ``/metadata``, ``/health``. Every session builds
its own env (``envkit.make_chat_env``); when the client disconnects or sends ``close``, openenv
calls ``close()``, which closes the env and so returns its sandbox.

The typed messages:

* action ``ChatAction``: the assistant turn, ``content`` and optional OpenAI ``tool_calls``;
* observation ``ChatObservation``: ``messages`` (the whole conversation so far, OpenAI format),
  ``tools`` (the OpenAI tool schemas), ``truncated``, ``info``; plus OpenEnv's ``reward``/``done``
  (``done`` is gymnasium's ``terminated or truncated``);
* state ``ChatState``: ``env_id``, ``task_id``, ``turn`` besides ``episode_id``/``step_count``.

Reset takes ``seed``, ``episode_id`` and ``options`` (the env's reset options).

Example::

    import uvicorn
    from envkit.serving.openenv_server import build_app

    uvicorn.run(build_app("GuessNumber-v0", max_sessions=4), port=8000)
    # then: openenv.core.generic_client.GenericEnvClient(base_url="http://127.0.0.1:8000")
"""

from __future__ import annotations

import functools
import json
import uuid
from typing import Any

from pydantic import Field

try:
    from openenv.core.env_server.http_server import create_app
    from openenv.core.env_server.interfaces import Environment
    from openenv.core.env_server.types import Action, EnvironmentMetadata, Observation, State
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        'envkit.serving.openenv_server needs openenv-core: pip install "envkit-rl[openenv]"'
    ) from e

import contextlib

from envkit.env import ChatEnv
from envkit.errors import EnvkitError
from envkit.registration import full_id, make_chat_env, spec

__all__ = ["ChatAction", "ChatObservation", "ChatState", "EnvkitEnvironment", "build_app"]


class ChatAction(Action):
    """The assistant's turn: text and/or OpenAI-format tool calls."""

    content: str = Field(default="", description="The assistant's reply text")
    tool_calls: list[dict[str, Any]] | None = Field(
        default=None,
        description='OpenAI tool calls: [{"id", "type": "function", "function": {"name", '
        '"arguments"}}]',
    )


class ChatObservation(Observation):
    """The conversation so far and the tools the model may call."""

    messages: list[dict[str, Any]] = Field(
        default_factory=list, description="The conversation so far (OpenAI chat format)"
    )
    tools: list[dict[str, Any]] = Field(
        default_factory=list, description="OpenAI schemas of the tools the model may call"
    )
    truncated: bool = Field(default=False, description="The episode ran out of turns")
    info: dict[str, Any] = Field(default_factory=dict, description="The env's step info")


class ChatState(State):
    """Where the session's episode stands."""

    env_id: str = ""
    task_id: str | None = None
    turn: int = 0


def _plain(value: Any) -> Any:
    """JSON-safe plain data (read-only message dicts thawed, odd values as text)."""
    return json.loads(json.dumps(value, default=str))


class EnvkitEnvironment(Environment[ChatAction, ChatObservation, ChatState]):
    """One envkit ``ChatEnv`` behind OpenEnv's ``Environment`` interface (one per session).

    Args:
        env_id: A registered envkit env id.
        env_kwargs: The env's constructor arguments.
    """

    SUPPORTS_CONCURRENT_SESSIONS = True  # every session makes its own env

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self._env: ChatEnv | None = None
        self._state = ChatState(env_id=env_id)

    @property
    def env(self) -> ChatEnv:
        """The session's env, made on first use."""
        if self._env is None:
            self._env = make_chat_env(self.env_id, **self.env_kwargs)
        return self._env

    def _observation(
        self, obs: list[dict[str, Any]], reward: float | None, done: bool, **extra: Any
    ) -> ChatObservation:
        return ChatObservation(
            messages=_plain(obs),
            tools=_plain(self.env.tool_schemas),
            reward=reward,
            done=done,
            **extra,
        )

    def reset(
        self,
        seed: int | None = None,
        episode_id: str | None = None,
        options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> ChatObservation:
        """Starts an episode of the envkit env (``seed`` picks the task)."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._state = ChatState(
            env_id=self.env_id,
            episode_id=episode_id or str(uuid.uuid4()),
            task_id=info.get("task_id"),
        )
        return self._observation(obs, None, False, info=_plain(info))

    def step(
        self, action: ChatAction, timeout_s: float | None = None, **kwargs: Any
    ) -> ChatObservation:
        """Plays one assistant turn.

        Raises:
            ValueError: no episode runs (reset first), it is over, or the turn is malformed.
        """
        if self.env.task is None:
            raise ValueError("no episode: send a reset before the first step")
        turn: dict[str, Any] = {"role": "assistant", "content": action.content}
        if action.tool_calls:
            turn["tool_calls"] = action.tool_calls
        try:
            obs, reward, terminated, truncated, info = self.env.step(turn)
        except EnvkitError as e:
            raise ValueError(str(e)) from e
        self._state.step_count += 1
        self._state.turn = int(info.get("turn", self._state.turn + 1))
        return self._observation(
            obs,
            float(reward),
            bool(terminated or truncated),
            truncated=bool(truncated),
            info=_plain(info),
        )

    @property
    def state(self) -> ChatState:
        return self._state

    def get_metadata(self) -> EnvironmentMetadata:
        return EnvironmentMetadata(
            name=self.env_id, description=f"envkit env {self.env_id} served over OpenEnv"
        )

    def close(self) -> None:
        """Closes the env (returning its sandbox); idempotent."""
        env, self._env = self._env, None
        if env is not None:
            env.close()


class _QuietDisconnect:
    """ASGI middleware: openenv's ``/ws`` handler closes, in its ``finally``, a socket whose
    client already left, and the ``WebSocketDisconnect`` that raises is logged as an error of the
    app. The session was destroyed before that; the error is noise and is dropped here."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "websocket":
            await self.app(scope, receive, send)
            return
        from starlette.websockets import WebSocketDisconnect

        with contextlib.suppress(WebSocketDisconnect):
            await self.app(scope, receive, send)


def build_app(
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    *,
    max_sessions: int = 8,
    session_timeout: float | None = None,
) -> Any:
    """openenv's FastAPI app serving ``env_id`` (one env per WebSocket session).

    Args:
        env_id: A registered envkit env id (``envkit/`` is the default namespace).
        env_kwargs: The env's constructor arguments.
        max_sessions: Most concurrent sessions; one more is refused (``CAPACITY_REACHED``).
        session_timeout: Seconds after which an idle session is closed (None: never).

    Raises:
        gymnasium.error.Error: ``env_id`` is not registered (with gymnasium's suggestions).
    """
    from openenv.core.env_server.types import ConcurrencyConfig

    fid = full_id(env_id)
    spec(fid)  # unknown ids fail here, not in every session
    factory = functools.partial(EnvkitEnvironment, fid, dict(env_kwargs or {}))
    config = ConcurrencyConfig(max_concurrent_envs=max_sessions, session_timeout=session_timeout)
    app = create_app(factory, ChatAction, ChatObservation, env_name=fid, concurrency_config=config)
    app.add_middleware(_QuietDisconnect)
    return app
