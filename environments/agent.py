"""``AgentEnv``: an agent you already have, as an environment.

An agent is ``async def agent(client, task) -> answer``: ``client`` is an ``openai.AsyncOpenAI``
bound to the episode's gateway session (every call it makes is recorded, token ids included),
``task`` is the env's ``envkit.Task``. ``AgentEnv`` pairs an agent with a task source and a
reward, so ``collect``, ``eval`` and the trainer play it like any other env: a rollout resets the
env, runs the agent against the policy through a ``envkit.gateway.Gateway``, links the calls
into training sequences and scores the answer (``envkit.agent_runner``).

Tasks (``tasks=``):

* a list of ``envkit.Task`` objects or of dicts (rows: a ``prompt`` column, a string or a list of
  chat messages; an optional ``answer`` column, the reference answer rewards compare against; an
  optional ``id``; every other column goes to ``Task.info`` for the agent and the reward);
* a path to a JSONL file (one such row a line) or a ``.json`` list of rows;
* a registered env id (``"envkit/Arithmetic-v0"``, a ``register_dataset`` id): each reset resets
  that env with the same seed and options and takes its task.

With a list or a file, seed ``i`` plays task ``i % len(tasks)`` (``seeds=range(len(tasks))``
plays each task once); ``options={"index": i}`` picks one; ``reset()`` without a seed draws one.

Rewards (``reward=``): a registered reward name, a function ``fn(trajectory, **kw) -> float |
None``, a ``Reward`` or a ``Rubric``, with the conventions of ``envkit.rewards``: the trajectory
is the episode as recorded, ``answer=`` is the task's reference and ``info["submitted"]`` is the
agent's answer (what ``exact_match``/``numeric_match`` compare). ``reward=None`` (or a group
scorer such as a ``RulerJudge``) means the episode is scored by comparing the trajectories of a
group: the env then sets ``group_reward`` (``"ruler"`` when none was given: the trainer's RULER
judge) and the episode's reward stays ``None`` until a group scorer writes it.

As a plain gymnasium env it is one step: ``reset(seed)`` returns the task's prompt as chat
messages, ``step(answer)`` scores the answer and terminates.

Example:
    >>> from envkit.environments.agent import AgentEnv
    >>> async def solve(client, task):
    ...     out = await client.chat.completions.create(model="policy", messages=task.messages)
    ...     return out.choices[0].message.content
    >>> env = AgentEnv(solve, tasks=[{"prompt": "2+2?", "answer": "4"}], reward="exact_match")
    >>> obs, info = env.reset(seed=0)
    >>> obs, info["task_id"]
    ([{'role': 'user', 'content': '2+2?'}], 'task-0')
    >>> env.step("The answer is 4.")[1:3]
    (1.0, True)
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import json
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym

from envkit.env import ChatEnv, Feedback, Task
from envkit.types import Message, Trajectory, TrajectoryGroup

__all__ = [
    "DEFAULT_MODEL",
    "GROUP_JUDGE",
    "AgentEnv",
    "AgentFn",
    "load_agent",
    "load_tasks",
    "register_agent",
]

AgentFn = Callable[[Any, Task], Awaitable[Any]]
"""``async def agent(client: openai.AsyncOpenAI, task: envkit.Task) -> answer``."""

DEFAULT_MODEL = "policy"
"""The model name an agent sends by default (``AgentEnv(model=...)`` changes it)."""

GROUP_JUDGE = "ruler"
"""``AgentEnv.group_reward`` when no reward was given: the trainer's RULER group judge."""

_RESERVED_INFO = frozenset(
    {
        "task_id",
        "turn",
        "submitted",
        "reward_breakdown",
        "reward_pending",
        "gateway_session",
        "untrainable_calls",
    }
)
"""Keys the env and the agent runner write into the info (a task column may not use them)."""


# --------------------------------------------------------------------------- the agent
def load_agent(agent: str | Callable[..., Any]) -> Callable[..., Any]:
    """The agent function from a callable or a ``"package.module:function"`` string.

    Raises:
        ValueError: a string that is not ``"module:attribute"``.
        ImportError: the module cannot be imported.
        AttributeError: the module has no such attribute.
        TypeError: the agent is not callable, or is a plain (not ``async``) function.

    Example:
        >>> load_agent("envkit.environments.agent:_echo_agent").__name__
        '_echo_agent'
    """
    if isinstance(agent, str):
        module_name, sep, attr = agent.partition(":")
        if not sep or not module_name or not attr:
            raise ValueError(
                f"agent {agent!r} is not 'package.module:function'; name the module and the "
                "async function in it, e.g. 'my_pkg.agents:solve'"
            )
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ImportError(
                f"cannot import the agent's module {module_name!r} ({e}); is it installed or on "
                "sys.path?"
            ) from e
        obj: Any = module
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise AttributeError(
                    f"agent {agent!r}: {obj.__name__ if obj is module else attr!r} has no "
                    f"attribute {part!r}"
                )
            obj = getattr(obj, part)
        agent = obj
    if not callable(agent):
        raise TypeError(
            f"an agent must be an async function agent(client, task), got "
            f"{type(agent).__name__}: {agent!r:.100}"
        )
    base = agent.func if isinstance(agent, functools.partial) else agent
    if inspect.isfunction(base) and not inspect.iscoroutinefunction(base):
        raise TypeError(
            f"the agent {getattr(base, '__qualname__', base)!r} is a plain function; it must be "
            "'async def agent(client, task)' (client is an openai.AsyncOpenAI: await its calls)"
        )
    return agent


async def _echo_agent(client: Any, task: Task) -> str:
    """An agent that asks the model once and returns its answer (for examples and smoke tests)."""
    messages = [Message.coerce(m).to_dict() for m in task.messages]
    out = await client.chat.completions.create(model=DEFAULT_MODEL, messages=messages)
    return out.choices[0].message.content or ""


# --------------------------------------------------------------------------- tasks
def load_tasks(
    source: Sequence[Task | Mapping[str, Any]] | str | os.PathLike[str] | Any,
    *,
    prompt: str = "prompt",
    answer: str = "answer",
) -> list[Task]:
    """The tasks of a list of ``Task``/row dicts, a JSONL/JSON file or a ``datasets.Dataset``.

    A row's ``prompt`` column (a string, or a list of chat messages) becomes ``Task.messages``;
    its ``answer`` column, when present, ``Task.reference`` (and ``Task.answer``); an ``id``
    column ``Task.id`` (default: ``"task-<row>"``); the other columns ``Task.info`` (JSON
    values). ``Task`` objects are kept as they are (their messages are checked).

    Raises:
        ValueError: no tasks, a row without a usable prompt, a column that is not JSON, a
            ``Task`` whose messages are not chat messages.
        FileNotFoundError: the file does not exist.
        TypeError: the source is none of the above.

    Example:
        >>> [t.messages for t in load_tasks([{"prompt": "hi", "answer": "yo", "level": 2}])]
        [[{'role': 'user', 'content': 'hi'}]]
        >>> t = load_tasks([{"prompt": "hi", "answer": "yo", "level": 2}])[0]
        >>> t.id, t.reference, t.info
        ('task-0', 'yo', {'level': 2})
    """
    from envkit.environments.dataset import load_rows

    items = source if isinstance(source, Sequence) and not isinstance(source, str) else None
    if items is not None and any(isinstance(t, Task) for t in items):
        tasks: list[Task] = []
        for i, item in enumerate(items):
            if isinstance(item, Task):
                try:
                    [Message.coerce(m) for m in item.messages]
                except Exception as e:
                    raise ValueError(f"task {i}: its messages are not chat messages: {e}") from e
                if not item.messages:
                    raise ValueError(f"task {i} has no messages; give it the prompt to answer")
                tasks.append(item)
            else:
                tasks.extend(_row_tasks([item], prompt, answer, start=i))
        return tasks
    rows = load_rows(source)
    if not rows:
        raise ValueError(f"no tasks in {source!r:.100}; give at least one row with a prompt")
    return _row_tasks(rows, prompt, answer, start=0)


def _row_tasks(
    rows: Sequence[Mapping[str, Any]], prompt: str, answer: str, *, start: int
) -> list[Task]:
    from envkit.environments.dataset import _check_json, _prompt_messages

    tasks = []
    for n, raw in enumerate(rows):
        i = start + n
        if not isinstance(raw, Mapping):
            raise TypeError(f"task {i} is a {type(raw).__name__}, not a dict or an envkit.Task")
        row = dict(raw)
        if prompt not in row:
            raise ValueError(
                f"task {i} has no {prompt!r} column (its columns: {sorted(row)}); give each "
                f"row the prompt, or pass prompt='<column>'"
            )
        messages = _prompt_messages(row, prompt, i)
        reference = row.get(answer)
        _check_json(reference, f"task {i}: the answer {answer!r}", allow_none=True)
        task_id = row.get("id")
        if task_id is not None and not isinstance(task_id, (str, int)):
            raise ValueError(f"task {i}: 'id' must be a string or an int, got {task_id!r:.100}")
        info = {k: v for k, v in row.items() if k not in (prompt, answer, "id")}
        clash = sorted(set(info) & _RESERVED_INFO)
        if clash:
            raise ValueError(f"task {i}: columns {clash} clash with keys the env writes; rename")
        for key, value in info.items():
            _check_json(value, f"task {i}: the column {key!r}", allow_none=True)
        tasks.append(
            Task(
                messages=messages,
                id=str(task_id) if task_id is not None else f"task-{i}",
                answer=reference,
                info=info,
                reference=reference,
            )
        )
    return tasks


def _is_file_source(source: Any) -> bool:
    if isinstance(source, os.PathLike):
        return True
    return isinstance(source, str) and (
        source.endswith((".jsonl", ".json")) or os.path.isfile(source)
    )


# --------------------------------------------------------------------------- rewards
def _per_trajectory(scorer: Any) -> bool:
    from envkit.rewards.registry import Reward
    from envkit.rewards.rubric import Rubric

    if isinstance(scorer, Reward):
        return not scorer.group
    if isinstance(scorer, Rubric):
        return all(_per_trajectory(s) for s, _ in scorer.components)
    return not getattr(scorer, "group", False)


# --------------------------------------------------------------------------- the env
class AgentEnv(ChatEnv):
    """An agent, its tasks and its reward as one environment (see the module doc).

    Args:
        agent: ``async def agent(client, task) -> answer`` or its ``"module:function"`` name.
            The answer is a string, an assistant message (a dict with ``content``, an
            ``envkit.Message``, or the ``openai`` SDK's ``ChatCompletionMessage``).
        tasks: A list of ``Task`` objects or row dicts, a JSONL/JSON path, a
            ``datasets.Dataset``, or a registered env id whose tasks to use.
        reward: A registered reward name, a function ``fn(trajectory, **kw) -> float | None``,
            a ``Reward`` or a ``Rubric``; ``None``: scored by the group (``group_reward``).
            A group scorer (a ``RulerJudge``, a ``@reward(group=True)``) is kept as
            ``group_reward``.
        model: The model name the agent sends; the gateway session serves only it (another
            name is answered 404).
        prompt: The prompt column of row tasks.
        answer: The reference-answer column of row tasks.
        task_env_kwargs: Keyword arguments for making the env of an env-id task source.
        render_mode: ``"ansi"``, ``"human"`` or ``None``.

    Attributes:
        agent: The agent function.
        tasks: The tasks (``None`` with an env-id source: ``task_env`` draws them).
        task_env: The env whose tasks are used (env-id source), else ``None``.
        reward: The per-episode scorer, or ``None`` when groups are scored.
        group_reward: What scores groups when ``reward`` is ``None``: the group scorer given,
            or ``"ruler"`` (``GROUP_JUDGE``), which asks the trainer for its RULER judge.
        model: The model name the agent must send.

    Raises:
        TypeError: a bad agent, task source or reward.
        ValueError: no tasks, a malformed row, an unknown reward name (``KeyError``).
    """

    def __init__(
        self,
        agent: AgentFn | str,
        tasks: Any,
        *,
        reward: Any = None,
        model: str = DEFAULT_MODEL,
        prompt: str = "prompt",
        answer: str = "answer",
        task_env_kwargs: Mapping[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(max_turns=1, render_mode=render_mode)
        self.agent: Callable[..., Any] = load_agent(agent)
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty model name, got {model!r}")
        self.model = model
        self.tasks: list[Task] | None = None
        self.task_env: ChatEnv | None = None
        self._tasks_id = tasks if isinstance(tasks, str) and not _is_file_source(tasks) else None
        self._kwargs: dict[str, Any] = {
            "model": model,
            "task_env_kwargs": task_env_kwargs if self._tasks_id is not None else None,
            "render_mode": render_mode,
        }
        if isinstance(tasks, str) and not _is_file_source(tasks):
            from envkit.registration import make_chat_env

            self.task_env = make_chat_env(tasks, **dict(task_env_kwargs or {}))
        elif isinstance(tasks, gym.Env):
            if task_env_kwargs:
                raise TypeError("task_env_kwargs applies to an env id, not an env instance")
            inner = tasks.unwrapped
            if not isinstance(inner, ChatEnv):
                raise TypeError(
                    f"tasks must come from an envkit ChatEnv, got a {type(inner).__name__}"
                )
            self.task_env = inner
        else:
            if task_env_kwargs:
                raise TypeError("task_env_kwargs applies only when tasks is a registered env id")
            if not _is_loaded(tasks):
                tasks = _LoadedTasks(load_tasks(tasks, prompt=prompt, answer=answer))
            self.tasks = tasks
        # A list's task is a deep copy (quick, on the event loop); another env's reset may block.
        threaded = False if self.task_env is None else self.task_env.step_in_thread
        self.step_in_thread = threaded  # type: ignore[misc]
        self.reward: Any = None
        self.group_reward: Any = GROUP_JUDGE
        if reward is not None:
            from envkit.rewards.scoring import as_scorer

            scorer = as_scorer(reward)
            if _per_trajectory(scorer):
                self.reward, self.group_reward = scorer, None
            else:
                self.group_reward = scorer

    def spawn(self) -> AgentEnv:
        """Another env with the same agent, tasks and reward (for concurrent episodes: a rollout
        given an unregistered instance makes more with it)."""
        if self.tasks is not None:
            tasks: Any = self.tasks
        elif self._tasks_id is not None:
            tasks = self._tasks_id
        else:
            assert self.task_env is not None
            spec = self.task_env.spec
            tasks = gym.make(spec) if spec is not None else copy.deepcopy(self.task_env)
        reward = self.reward if self.reward is not None else self.group_reward
        reward = None if isinstance(reward, str) and reward == GROUP_JUDGE else reward
        return AgentEnv(self.agent, tasks, reward=reward, **self._kwargs)

    @property
    def scored_by_group(self) -> bool:
        """True when episodes get their reward from a group scorer (``group_reward``)."""
        return self.reward is None

    @property
    def num_tasks(self) -> int | None:
        """How many tasks the list or file holds (``None`` with an env-id source)."""
        return len(self.tasks) if self.tasks is not None else None

    def make_task(self, options: dict[str, Any] | None) -> Task:
        if self.task_env is not None:
            self.task_env.reset(seed=self._seed, options=options)
            if self.task_env.task is None:  # pragma: no cover - ChatEnv.reset always sets it
                raise RuntimeError("the task env made no task")
            return copy.deepcopy(self.task_env.task)
        assert self.tasks is not None
        n = len(self.tasks)
        index = (options or {}).get("index")
        if index is None:
            index = self._seed % n if self._seed is not None else int(self.np_random.integers(n))
        elif isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"options['index'] must be an int, got {index!r}")
        elif not 0 <= index < n:
            raise ValueError(f"options['index']={index} is out of range: there are {n} tasks")
        task = copy.deepcopy(self.tasks[index])
        if task.id is None:
            task.id = f"task-{index}"
        return task

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Starts an episode on the task of ``seed`` (see the module doc); returns its prompt."""
        self._seed = seed
        return super().reset(seed=seed, options=options)

    _seed: int | None = None

    def step(
        self, action: Any
    ) -> tuple[list[dict[str, Any]], SupportsFloat, bool, bool, dict[str, Any]]:
        """Scores ``action`` as the agent's answer to the task and ends the episode.

        Raises:
            InvalidActionError: the action is not an assistant turn.
            EpisodeOverError: the episode already ended; call ``reset()``.
            ValueError: the reward could not score the answer (a gymnasium step needs a float).
        """
        message = self._start_step(action)
        return self._finish_step(self.respond(message), None)

    def respond(self, message: Message) -> Feedback:
        """Scores ``message`` as the agent's answer (the trajectory: the prompt and the answer)."""
        from envkit._async import run_sync

        traj = self.trajectory_of(message)
        value, info = run_sync(self._score(traj))
        self._check_scored(traj, value)
        return Feedback(reward=value or 0.0, done=True, info=info)

    async def astep(
        self, action: Any, *, trajectory: Trajectory | None = None
    ) -> tuple[list[dict[str, Any]], SupportsFloat, bool, bool, dict[str, Any]]:
        """Async ``step``; with ``trajectory`` (an agent episode as recorded), scores that.

        With a trajectory, its ``reward``, ``reward_breakdown`` and ``metrics["reward_errors"]``
        are written (a reward that fails leaves ``reward=None`` with the error, as
        ``score_groups`` does) and a failed reward raises nothing; the returned reward is then
        0.0. Without one, it is ``step`` on the event loop.
        """
        message = self._start_step(action)
        traj = trajectory if trajectory is not None else self.trajectory_of(message)
        value, info = await self._score(traj)
        if trajectory is None:
            self._check_scored(traj, value)
        return self._finish_step(Feedback(reward=value or 0.0, done=True, info=info), None)

    def _check_scored(self, traj: Trajectory, value: float | None) -> None:
        if value is None and self.reward is not None:
            errors = traj.metrics.get("reward_errors")
            detail = (
                "; ".join(f"{k}: {v}" for k, v in errors.items())
                if isinstance(errors, dict) and errors
                else "the reward returned None (unknown)"
            )
            raise ValueError(f"{self.reward.name!r} could not score this answer: {detail}")

    def trajectory_of(self, message: Message) -> Trajectory:
        """The episode as a plain ``step`` knows it: the prompt and ``message`` as the answer."""
        assert self.task is not None
        env_id = self.spec.id if self.spec is not None else type(self).__name__
        return Trajectory(
            env_id=env_id,
            task_id=self.task.id,
            messages=list(self.messages),
            reference=_json_or_none(self.task.reference),
            info={**_json_info(self.task.info), "submitted": message.content or ""},
        )

    async def _score(self, traj: Trajectory) -> tuple[float | None, dict[str, Any]]:
        """Scores ``traj`` in place; returns its reward and the step info."""
        info: dict[str, Any] = {"submitted": traj.info.get("submitted")}
        if self.reward is None:
            name = (
                self.group_reward
                if isinstance(self.group_reward, str)
                else getattr(self.group_reward, "name", type(self.group_reward).__name__)
            )
            traj.reward = None
            traj.metrics["reward_pending"] = name
            info["reward_pending"] = name
            return None, info
        group = TrajectoryGroup.model_construct(
            env_id=traj.env_id,
            seed=traj.seed,
            task_id=traj.task_id,
            trajectories=[traj],
            outcome="ok",
            error=None,
            metrics={},
        )
        scores = await self.reward.evaluate(group)
        scores.apply(group)
        info["reward_breakdown"] = dict(traj.reward_breakdown)
        return traj.reward, info

    def close(self) -> None:
        if self.task_env is not None:
            self.task_env.close()
        super().close()

    def __repr__(self) -> str:
        name = getattr(self.agent, "__qualname__", type(self.agent).__name__)
        source = f"{len(self.tasks)} tasks" if self.tasks is not None else repr(self.task_env)
        scored = self.reward.name if self.reward is not None else f"group:{self.group_reward}"
        return f"AgentEnv({name}, {source}, reward={scored})"


class _LoadedTasks(list):  # type: ignore[type-arg]
    """Tasks already checked by ``load_tasks`` (a registered agent env shares them)."""


def _is_loaded(tasks: Any) -> bool:
    return isinstance(tasks, _LoadedTasks)


def _json_or_none(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return repr(value)


def _json_info(info: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): _json_or_none(v) for k, v in info.items()}


# --------------------------------------------------------------------------- registration
class _AgentFactory:
    """The entry point of a registered agent env: shares the loaded tasks and the reward."""

    metadata = AgentEnv.metadata

    def __init__(self, agent: Any, tasks: Any, reward: Any, env_id: str) -> None:
        self.agent = agent
        self.tasks = tasks
        self.reward = reward
        self.__name__ = f"AgentEnv[{env_id}]"
        self.__doc__ = f"The agent {getattr(agent, '__qualname__', agent)!r} on its tasks."

    def __call__(self, **kwargs: Any) -> AgentEnv:
        kwargs.setdefault("reward", self.reward)
        return AgentEnv(self.agent, self.tasks, **kwargs)

    def __deepcopy__(self, memo: dict[int, Any]) -> _AgentFactory:
        return self  # gymnasium copies specs; the loaded tasks are shared, never changed

    def __repr__(self) -> str:
        return f"<{self.__name__}>"


def register_agent(
    id: str,
    *,
    agent: AgentFn | str,
    tasks: Any,
    reward: Any = None,
    model: str = DEFAULT_MODEL,
    prompt: str = "prompt",
    answer: str = "answer",
    task_env_kwargs: Mapping[str, Any] | None = None,
    override: bool = False,
) -> str:
    """Registers ``AgentEnv(agent, tasks, reward=...)`` under ``envkit/<id>``; returns the id.

    The agent is resolved and the tasks are loaded and checked now (errors surface here, not at
    the first ``make``); every env made from the id shares them. ``envkit.make(id)``,
    ``gymnasium.make("envkit/<id>")``, ``envkit.collect(id, policy, ...)`` then work as for any
    env. The same works through ``envkit.register(id, entry_point=AgentEnv, kwargs={"agent":
    "my_pkg.agents:solve", "tasks": "tasks.jsonl", "reward": "exact_match"})``.

    Raises:
        TypeError, ValueError, ImportError: see ``AgentEnv``; gymnasium.error.Error: a bad or
            taken id.

    Example:
        >>> import envkit
        >>> from envkit.environments.agent import register_agent
        >>> register_agent("DocAgent-v0", agent="envkit.environments.agent:_echo_agent",
        ...                tasks=[{"prompt": "Say hi."}], reward=lambda t: 1.0, override=True)
        'envkit/DocAgent-v0'
        >>> envkit.make("DocAgent-v0").unwrapped.num_tasks
        1
    """
    from envkit.registration import full_id, register

    agent_fn = load_agent(agent)
    kwargs: dict[str, Any] = {"model": model}
    if isinstance(tasks, str) and not _is_file_source(tasks):
        source: Any = tasks
        if task_env_kwargs:
            kwargs["task_env_kwargs"] = dict(task_env_kwargs)
    else:
        if task_env_kwargs:
            raise TypeError("task_env_kwargs applies only when tasks is a registered env id")
        source = _LoadedTasks(load_tasks(tasks, prompt=prompt, answer=answer))
    AgentEnv(agent_fn, source, reward=reward, **kwargs).close()  # fail now on a bad reward
    factory = _AgentFactory(agent_fn, source, reward, full_id(id))
    return register(id, factory, kwargs=kwargs, override=override)
