"""``MCPEnv``: an environment from MCP servers, a task list and a reward.

The model gets the servers' tools; tool calls go to the servers and their results come back as
tool messages. The episode ends when the model answers without a tool call (terminated) or
after ``max_turns`` assistant turns (truncated). Per-episode servers get a fresh session (a new
process over stdio) at every ``reset`` and are closed when the episode ends.

Scoring: a per-trajectory ``reward`` (a registered name, a function ``fn(trajectory, **kw)``,
a ``Reward`` or ``Rubric``) scores the finished conversation and is the reward of the last
step. A group scorer (the RULER judge, ``RulerJudge``, or a group reward) scores whole groups
after the rollout: the env's steps then give 0.0 and ``env.group_reward`` is what to pass to
``score_groups`` or the trainer. Without a ``reward``, the RULER judge on ``judge_model`` is
used (``ENVKIT_JUDGE_MODEL`` when not given).

Example:
    >>> from envkit.environments.mcp import MCPServer, register_mcp_env
    >>> register_mcp_env(
    ...     "Counter-v0",
    ...     server=MCPServer(command="python counter_server.py"),
    ...     tasks=["Increment the counter twice, then tell me its value."],
    ...     reward=lambda trajectory: float("2" in (trajectory.messages[-1].content or "")),
    ...     override=True,
    ... )
    'envkit/Counter-v0'

The server starts when the env is made (``envkit.make("Counter-v0")``), not at registration.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from envkit.env import ChatEnv, Feedback, Task
from envkit.environments.mcp.server import MCPServer
from envkit.environments.mcp.tools import MCPToolset
from envkit.spaces import AssistantTurn
from envkit.tools import ToolBox
from envkit.types import Message, Trajectory, TrajectoryGroup

__all__ = ["MCPEnv", "MCPTask", "register_mcp_env"]

JUDGE_MODEL_ENV = "ENVKIT_JUDGE_MODEL"


class MCPTask(BaseModel):
    """One task of an ``MCPEnv``.

    Attributes:
        prompt: The user message, or a list of chat messages to start from.
        reference: The reference answer rewards compare against (``None``: none).
        id: A stable id (default: ``task-<index>``).
        info: JSON facts returned in the reset and step info (rewards read them as keywords).
    """

    model_config = ConfigDict(extra="forbid")

    prompt: str | list[dict[str, Any]]
    reference: Any = None
    id: str | None = None
    info: dict[str, Any] = Field(default_factory=dict)

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, v: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        if not v:
            raise ValueError("a task's prompt is empty")
        return v


def _tasks(tasks: Sequence[str | Mapping[str, Any] | MCPTask]) -> list[MCPTask]:
    if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence) or not tasks:
        raise ValueError(
            "tasks must be a non-empty list of prompts (strings) or dicts with 'prompt' (and "
            "optionally 'reference', 'id', 'info')"
        )
    out = []
    for i, t in enumerate(tasks):
        try:
            task = (
                t
                if isinstance(t, MCPTask)
                else MCPTask(prompt=t)
                if isinstance(t, str)
                else MCPTask.model_validate(dict(t))
            )
        except (ValidationError, TypeError, ValueError) as e:
            raise ValueError(f"task {i} is not valid: {e}") from e
        out.append(task.model_copy(update={"id": task.id or f"task-{i}"}))
    return out


def _per_trajectory(scorer: Any) -> bool:
    from envkit.rewards.registry import Reward
    from envkit.rewards.rubric import Rubric

    if isinstance(scorer, Reward):
        return not scorer.group
    if isinstance(scorer, Rubric):
        return all(_per_trajectory(s) for s, _ in scorer.components)
    return False


def _scorer(
    reward: Any, judge_model: str | None, judge_options: Mapping[str, Any] | None
) -> tuple[Any, bool]:
    """The scorer and whether it scores each trajectory on its own (else: whole groups)."""
    from envkit.rewards.scoring import as_scorer

    if reward is None:
        model = judge_model or os.environ.get(JUDGE_MODEL_ENV)
        if not model:
            raise ValueError(
                "MCPEnv needs a reward: pass reward= (a registered reward name, a function "
                "fn(trajectory, **kw) -> float, a Reward or Rubric, or a RulerJudge), or "
                f"judge_model= (or ${JUDGE_MODEL_ENV}) to score groups with the RULER judge"
            )
        from envkit.rewards.judge import RulerJudge

        return RulerJudge(model, **dict(judge_options or {})), False
    scorer = as_scorer(reward)
    return scorer, _per_trajectory(scorer)


class MCPEnv(ChatEnv):
    """Tasks solved with the tools of MCP servers.

    Args:
        servers: The MCP servers (an ``MCPServer`` or a list).
        tasks: Prompts (strings) or dicts with ``prompt`` and optional ``reference``, ``id``,
            ``info``. ``reset(seed=...)`` draws one; ``reset(options={"index": i})`` picks one.
        reward: How episodes are scored (see the module docs); ``None``: the RULER judge.
        judge_model: The judge's litellm model when ``reward`` is ``None``.
        judge_options: Keyword arguments of ``RulerJudge`` (``rubric``, ``api_base``,
            ``api_key``, ``cache``, ``timeout_s``...).
        max_turns: Assistant turns before the episode is truncated.
        system_prompt: The system message of every task.
        max_result_chars: Tool results longer than this are cut.
        render_mode: ``"ansi"`` or ``"human"``.

    Attributes:
        toolset: The ``MCPToolset`` (servers, sessions, tools).
        group_reward: The group scorer (a ``RulerJudge``...) to run after rollouts, or ``None``
            when the env scores episodes itself.

    Raises:
        ValueError: no tasks, a bad task, or no way to score.
        ConnectionError: a server could not be started or listed.
    """

    def __init__(
        self,
        servers: MCPServer | Sequence[MCPServer],
        tasks: Sequence[str | Mapping[str, Any] | MCPTask],
        *,
        reward: Any = None,
        judge_model: str | None = None,
        judge_options: Mapping[str, Any] | None = None,
        max_turns: int = 10,
        system_prompt: str | None = None,
        max_result_chars: int = 20_000,
        render_mode: str | None = None,
    ) -> None:
        self.tasks = _tasks(tasks)
        self.scorer, self._scores_itself = _scorer(reward, judge_model, judge_options)
        self.group_reward = None if self._scores_itself else self.scorer
        self.toolset: MCPToolset | None = None
        super().__init__(max_turns=max_turns, system_prompt=system_prompt, render_mode=render_mode)
        self.toolset = MCPToolset(servers)
        self.toolbox = ToolBox(self.toolset.tools, timeout=None, max_result_chars=max_result_chars)
        self.action_space = AssistantTurn(tool_names=list(self.toolbox.tools))
        self._task_info: dict[str, Any] = {}

    @property
    def num_tasks(self) -> int:
        """How many tasks the env draws from."""
        return len(self.tasks)

    def make_task(self, options: dict[str, Any] | None) -> Task:
        index = (options or {}).get("index")
        if index is None:
            index = int(self.np_random.integers(len(self.tasks)))
        elif isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"options['index'] must be an int, got {index!r}")
        elif not 0 <= index < len(self.tasks):
            raise ValueError(f"options['index']={index} is out of range: {len(self.tasks)} tasks")
        t = self.tasks[index]
        messages = (
            [{"role": "user", "content": t.prompt}] if isinstance(t.prompt, str) else t.prompt
        )
        self._task_info = copy.deepcopy(t.info)
        return Task(
            messages=copy.deepcopy(messages),
            id=t.id,
            answer=t.reference,
            info={"index": index, **copy.deepcopy(t.info)},
            reference=t.reference,
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Draws a task and opens fresh sessions of the per-episode servers.

        Raises:
            envkit.InfraError: a server could not be started.
        """
        obs, info = super().reset(seed=seed, options=options)
        assert self.toolset is not None
        self.toolset.start_episode()
        return obs, info

    def _final(self, messages: Sequence[Message] = ()) -> Feedback:
        """The last step's feedback: the episode's score (or 0.0 pending the group scorer)."""
        assert self.toolset is not None
        self.toolset.end_episode()
        if not self._scores_itself:
            return Feedback(messages=messages, info={"scored_by": self.scorer.name})
        score, breakdown = self._score(messages)
        return Feedback(
            reward=score,
            messages=messages,
            info={"score": score, "reward_breakdown": breakdown},
        )

    def _score(self, extra: Sequence[Message]) -> tuple[float, dict[str, float | None]]:
        from envkit._async import run_sync

        assert self.task is not None
        env_id = self.spec.id if self.spec is not None else type(self).__name__
        traj = Trajectory(
            env_id=env_id,
            messages=[*self.messages, *extra],
            tools=self.tool_schemas,
            reference=self.task.reference,
            info=copy.deepcopy(self._task_info),
        )
        scores = run_sync(self.scorer.evaluate(TrajectoryGroup(env_id=env_id, trajectories=[traj])))
        value = scores.totals[0]
        if value is None:
            errors = scores.errors[0] or {"?": "the reward returned None (unknown)"}
            raise ValueError(
                f"{self.scorer.name!r} could not score this episode: "
                + "; ".join(f"{k}: {v}" for k, v in errors.items())
            )
        return float(value), dict(scores.breakdown[0])

    def respond(self, message: Message) -> Feedback:
        feedback = self._final()
        feedback.done = True
        return feedback

    def after_tools(self, message: Message, results: list[Message]) -> Feedback:
        if self.turn >= self.max_turns:
            return self._final(results)
        return Feedback(messages=results)

    def close(self) -> None:
        """Closes the sessions and stops the servers this env started."""
        if self.toolset is not None:
            self.toolset.close()
        super().close()


class _MCPEnvFactory:
    """The entry point of a registered MCP env (keeps the servers, tasks and reward)."""

    def __init__(self, env_id: str, servers: list[MCPServer], tasks: list[MCPTask], reward: Any):
        self.servers = servers
        self.tasks = tasks
        self.reward = reward
        self.__name__ = f"MCPEnv[{env_id}]"
        labels = ", ".join(s.label for s in servers)
        self.__doc__ = f"Tasks solved with the tools of MCP servers ({labels}): {len(tasks)} tasks."

    def __call__(self, **kwargs: Any) -> MCPEnv:
        kwargs.setdefault("reward", self.reward)
        return MCPEnv(self.servers, self.tasks, **kwargs)

    def __repr__(self) -> str:
        return f"<{self.__name__}>"


def register_mcp_env(
    id: str,
    *,
    server: MCPServer | Sequence[MCPServer],
    tasks: Sequence[str | Mapping[str, Any] | MCPTask],
    reward: Any | Callable[..., Any] = None,
    override: bool = False,
    **kwargs: Any,
) -> str:
    """Registers an ``MCPEnv`` under ``envkit/<id>`` for ``gymnasium.make``, the CLI and rollouts.

    The tasks and the reward are checked now; the servers are started at the first ``make``.
    ``kwargs`` (``max_turns``, ``judge_model``, ``judge_options``, ``system_prompt``...) are
    the registration's defaults, which ``make(id, **kw)`` overrides.

    Returns:
        The full id, e.g. ``"envkit/Files-v0"``.

    Raises:
        ValueError: bad tasks or no way to score; gymnasium.error.Error: a bad or taken id.
    """
    from envkit.registration import full_id, register

    servers = [server] if isinstance(server, MCPServer) else list(server)
    if not servers or not all(isinstance(s, MCPServer) for s in servers):
        raise TypeError("server= must be an MCPServer or a list of MCPServer")
    checked = _tasks(tasks)
    _scorer(reward, kwargs.get("judge_model"), kwargs.get("judge_options"))
    factory = _MCPEnvFactory(full_id(id), servers, checked, reward)
    return register(id, factory, kwargs=kwargs, override=override)
