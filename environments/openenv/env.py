"""``OpenEnvChatEnv``: an OpenEnv environment played as an envkit ``ChatEnv``.

The env talks OpenEnv's WebSocket protocol to a server: one reached by URL, one envkit starts
as a local process, or one envkit runs from a local Docker image. Every episode opens its own
OpenEnv session (the server builds a fresh environment for it); rewards and ``done`` are the
environment's own. A server that dies, stops answering or refuses the session ends the episode
as ``infra_error`` (``envkit.errors.InfraError``).

Example (with a server running on port 8000)::

    from envkit.environments.openenv import OpenEnvChatEnv

    env = OpenEnvChatEnv.from_url("http://127.0.0.1:8000")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("50")
    env.close()
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from envkit.env import ChatEnv, Feedback, Task
from envkit.environments.openenv import _servers
from envkit.environments.openenv._mapping import (
    ActionMapper,
    observation_text,
    tool_result_text,
)
from envkit.environments.openenv._protocol import (
    ActionRejected,
    OpenEnvServerError,
    Session,
    get_json,
)
from envkit.errors import InfraError
from envkit.tools import Tool, ToolBox, parse_arguments
from envkit.types import Message

__all__ = ["OpenEnvChatEnv"]


class _RemoteTool(Tool):
    """A tool of the OpenEnv env: its JSON schema comes from the server, calls go there."""

    def __init__(self, spec: Mapping[str, Any], call: Any) -> None:  # no super(): no Python fn
        self.name = str(spec["name"])
        self.description = str(spec.get("description") or f"The {self.name} tool.")
        params = dict(spec.get("inputSchema") or spec.get("input_schema") or {})
        params.setdefault("type", "object")
        params.setdefault("properties", {})
        self.params = params
        self.schema = {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": params},
        }
        self.timeout = None  # the session's own timeout bounds every call
        self.is_async = False
        self._bound_self = False
        self.fn = lambda **kwargs: call(self.name, kwargs)
        self.args_model = None  # type: ignore[assignment]

    def validate(self, arguments: str | dict[str, Any]) -> dict[str, Any]:
        arguments = parse_arguments(arguments)
        missing = [k for k in self.params.get("required", []) if k not in arguments]
        if missing:
            raise TypeError(f"invalid arguments for {self.name}: missing {missing}")
        if self.params.get("additionalProperties") is False:
            extra = sorted(set(arguments) - set(self.params["properties"]))
            if extra:
                raise TypeError(f"invalid arguments for {self.name}: unknown {extra}")
        return arguments


class OpenEnvChatEnv(ChatEnv):
    """Plays an OpenEnv environment server as a chat environment.

    Give exactly one of ``url``, ``command`` or ``image``.

    Args:
        url: A running server, e.g. ``"http://127.0.0.1:8000"``.
        command: A command that starts the server; envkit fills ``{port}`` (and ``{host}``,
            127.0.0.1) in, waits for ``/health`` and stops it on ``close()``, ``atexit`` or
            when this process dies. E.g. ``"python -m uvicorn my_env.app:app --port {port}"``.
        image: A local Docker image whose server listens on ``container_port`` (OpenEnv's
            images use 8000). It is never pulled.
        prompt: Text put before the first observation in the opening user message.
        action_field: The action field the reply's text fills (default: read from ``/schema``).
        max_turns: Assistant turns before the episode is truncated.
        timeout: Seconds to wait for each answer of the server before ``InfraError``.
        startup_timeout: Seconds a started server (process or container) has to become healthy.
        reset_kwargs: Extra fields of every ``reset`` request (e.g. a difficulty).
        tools: Offer the env's MCP tools (``tools/list``) to the model (default True).
        cwd: Working directory of ``command``.
        server_env: Extra environment variables of the server process or container.
        container_port: The port the image's server listens on.
        system_prompt: See ``ChatEnv``.
        render_mode: See ``ChatEnv``.
    """

    step_in_thread: ClassVar[bool] = True  # every call waits on the network

    def __init__(
        self,
        *,
        url: str | None = None,
        command: str | Sequence[str] | None = None,
        image: str | None = None,
        prompt: str | None = None,
        action_field: str | None = None,
        max_turns: int = 8,
        timeout: float = 60.0,
        startup_timeout: float = 60.0,
        reset_kwargs: Mapping[str, Any] | None = None,
        tools: bool = True,
        cwd: str | None = None,
        server_env: Mapping[str, str] | None = None,
        container_port: int = 8000,
        system_prompt: str | None = None,
        render_mode: str | None = None,
    ) -> None:
        given = [n for n, v in (("url", url), ("command", command), ("image", image)) if v]
        if len(given) != 1:
            raise ValueError(
                "OpenEnvChatEnv needs exactly one of url=, command= or image= (got "
                f"{given or 'none'}); e.g. OpenEnvChatEnv(url='http://127.0.0.1:8000')"
            )
        self._key: str | None = None
        self._session: Session | None = None
        self.timeout = timeout
        self.prompt = prompt
        self.reset_kwargs = dict(reset_kwargs or {})
        if url is not None:
            self.server = _servers.ServerHandle(url.rstrip("/"))
        else:
            self._key = json.dumps(
                {
                    "command": command,
                    "image": image,
                    "cwd": cwd,
                    "env": dict(server_env or {}),
                    "port": container_port,
                },
                sort_keys=True,
            )
            if command is not None:
                start = lambda: _servers.start_process(  # noqa: E731
                    command, cwd=cwd, env=server_env, startup_timeout=startup_timeout
                )
            else:
                assert image is not None
                start = lambda: _servers.start_image(  # noqa: E731
                    image,
                    container_port=container_port,
                    env=server_env,
                    startup_timeout=startup_timeout,
                )
            self.server = _servers.acquire(self._key, start)
        try:
            schema = get_json(self.server.url, "/schema", timeout=timeout)
            self.action_mapper = ActionMapper(schema.get("action") or {}, action_field)
            remote = self._list_tools() if tools or self.action_mapper.mode == "tool" else []
        except BaseException:
            self._release()
            raise
        if self.action_mapper.mode == "tool" and not remote:
            self._release()
            raise ValueError(
                f"the OpenEnv env at {self.server.url} takes MCP tool calls (CallToolAction) but "
                "lists no tools (tools/list)"
            )
        box = ToolBox([_RemoteTool(spec, self._call_tool) for spec in remote], timeout=None)
        super().__init__(
            max_turns=max_turns, system_prompt=system_prompt, render_mode=render_mode, toolbox=box
        )
        self._seed: int | None = None
        self._note_lock = threading.Lock()
        self._turn_reward = 0.0
        self._turn_done = False
        self._last_observation: dict[str, Any] = {}

    # ----------------------------------------------------------------- factories
    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> OpenEnvChatEnv:
        """Plays the server at ``url``."""
        return cls(url=url, **kwargs)

    @classmethod
    def from_command(cls, command: str | Sequence[str], **kwargs: Any) -> OpenEnvChatEnv:
        """Starts ``command`` (with a ``{port}`` placeholder) and plays the server it runs."""
        return cls(command=command, **kwargs)

    @classmethod
    def from_image(cls, image: str, **kwargs: Any) -> OpenEnvChatEnv:
        """Runs the local Docker image ``image`` and plays its server."""
        return cls(image=image, **kwargs)

    # ----------------------------------------------------------------- server plumbing
    def _list_tools(self) -> list[dict[str, Any]]:
        session = Session(self.server.url, timeout=self.timeout)
        try:
            result = session.mcp("tools/list")
        except OpenEnvServerError:
            return []  # the env has no MCP endpoint
        finally:
            session.close()
        return list((result or {}).get("tools") or [])

    def _call_tool(self, name: str, arguments: dict[str, Any]) -> str:
        session = self._live_session()
        if self.action_mapper.mode == "tool":
            try:
                out = session.step({"type": "call_tool", "tool_name": name, "arguments": arguments})
            except ActionRejected as e:
                raise ValueError(f"the env refused the call: {e}") from e
            self._note(out)
            obs = out.get("observation") or {}
            if obs.get("error"):
                err = obs["error"]
                return f"Error: {err.get('message', err) if isinstance(err, dict) else err}"
            return tool_result_text(obs.get("result"))
        return tool_result_text(session.mcp("tools/call", {"name": name, "arguments": arguments}))

    def _note(self, out: dict[str, Any]) -> None:
        with self._note_lock:  # the calls of one turn run in threads
            self._turn_reward += float(out.get("reward") or 0.0)
            self._turn_done = self._turn_done or bool(out.get("done"))
            self._last_observation = dict(out.get("observation") or {})

    def _live_session(self) -> Session:
        if self._session is None or self._session.closed:
            raise InfraError("the OpenEnv session of this episode is gone; reset the env")
        return self._session

    def _end_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _release(self) -> None:
        self._end_session()
        if self._key is not None:
            _servers.release(self._key)
            self._key = None

    # ----------------------------------------------------------------- ChatEnv
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        self._seed = seed
        return super().reset(seed=seed, options=options)

    def make_task(self, options: dict[str, Any] | None) -> Task:
        if self._closed:
            raise RuntimeError("this OpenEnvChatEnv is closed; make a new one")
        self._end_session()
        self._session = Session(self.server.url, timeout=self.timeout)
        request: dict[str, Any] = dict(self.reset_kwargs)
        request.update((options or {}).get("reset_kwargs") or {})
        # the seed reaches the server; a reset without one continues this env's seeded stream
        # (gymnasium's rule), so reset(seed=s) then reset() is reproducible too
        seed = self._seed if self._seed is not None else int(self.np_random.integers(2**31 - 1))
        request.setdefault("seed", seed)
        out = self._session.reset(**request)
        obs = dict(out.get("observation") or {})
        self._last_observation = obs
        if self.action_mapper.mode == "chat":  # an envkit env: its conversation as it is
            return Task(
                messages=list(obs.get("messages") or []),
                info={"openenv_url": self.server.url, "openenv_observation": copy.deepcopy(obs)},
            )
        text = observation_text(obs)
        parts = [p for p in (self.prompt, text, self.action_mapper.describe()) if p]
        if not parts:
            parts = ["The environment is ready."]
        return Task(
            messages=[{"role": "user", "content": "\n\n".join(parts)}],
            info={"openenv_url": self.server.url, "openenv_observation": copy.deepcopy(obs)},
        )

    def _feedback(
        self, reward: float, done: bool, messages: list[dict[str, Any]], *, keep: bool = False
    ) -> Feedback:
        """``keep``: the messages stay even when the episode ends (tool results answer calls)."""
        if done or self.turn >= self.max_turns:
            self._end_session()  # free the server's slot as soon as the episode is over
        return Feedback(
            reward=reward,
            done=done,
            messages=messages if keep or not done else [],
            info={"openenv_observation": copy.deepcopy(self._last_observation)},
        )

    def respond(self, message: Message) -> Feedback:
        text = message.content or ""
        if self.action_mapper.mode == "tool":
            # No action carries text here: a reply without tool calls is the final answer.
            return self._feedback(0.0, True, [])
        try:
            action = self.action_mapper.action(text)
            out = self._live_session().step(action)
        except (ValueError, ActionRejected) as e:
            note = f"Your reply could not be used as an action: {e}"
            return self._feedback(0.0, False, [{"role": "user", "content": note}])
        reward = float(out.get("reward") or 0.0)
        done = bool(out.get("done"))
        self._last_observation = dict(out.get("observation") or {})
        if self.action_mapper.mode == "chat":
            new = list(self._last_observation.get("messages") or [])[len(self.messages) :]
            return self._feedback(reward, done, new)
        obs_text = observation_text(self._last_observation)
        return self._feedback(
            reward, done, [{"role": "user", "content": obs_text or "(no output)"}]
        )

    def after_tools(self, message: Message, results: list[Message]) -> Feedback:
        reward, done = self._turn_reward, self._turn_done
        self._turn_reward, self._turn_done = 0.0, False
        return self._feedback(reward, done, [r.to_dict() for r in results], keep=True)

    def state(self) -> dict[str, Any]:
        """The OpenEnv ``State`` of the current episode's environment."""
        return self._live_session().state()

    def close(self) -> None:
        """Ends the session and, for the last env on a server envkit started, stops it."""
        self._release()
        super().close()
