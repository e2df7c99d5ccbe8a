"""Data that crosses a boundary: chat messages, tool calls, completions and trajectories.

Everything here is a pydantic v2 model with a lossless JSON round-trip, so trajectories can be
streamed to JSONL, shipped to a judge, or read back by the trainer.

Example:
    >>> from envkit.types import Message, Trajectory
    >>> traj = Trajectory(env_id="envkit/Arithmetic-v0", seed=3,
    ...                   messages=[Message(role="user", content="2+2?")])
    >>> Trajectory.model_validate_json(traj.model_dump_json()) == traj
    True
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

__all__ = [
    "Completion",
    "FrozenDict",
    "FrozenList",
    "GenerationRequest",
    "Message",
    "MessageDict",
    "Outcome",
    "Role",
    "Timings",
    "ToolCall",
    "ToolCallFunction",
    "Trajectory",
    "TrajectoryGroup",
    "Usage",
    "read_jsonl",
    "write_jsonl",
]

Role = Literal["system", "user", "assistant", "tool"]

Outcome = Literal[
    "ok", "truncated", "timeout", "env_error", "policy_error", "agent_error", "infra_error"
]
"""How an episode ended.

* ``ok``: the environment terminated the episode normally.
* ``truncated``: the episode hit ``max_turns`` (or another limit of the env).
* ``timeout``: the rollout's per-episode timeout expired.
* ``env_error``: the environment raised (a bug or bad task), see ``Trajectory.error``.
* ``policy_error``: the policy raised (model server down, bad output it could not parse ...).
* ``agent_error``: an agent episode's agent (``envkit.AgentEnv``) raised (the traceback is in
  ``Trajectory.error``), returned something that is not an answer, or never called the model.
* ``infra_error``: infrastructure under the env failed (sandbox container killed, daemon gone).
"""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class ToolCallFunction(_Model):
    """The ``function`` part of an OpenAI tool call: a name and JSON-encoded arguments."""

    name: str
    arguments: str = "{}"
    """JSON text, exactly as the model produced it (it may be malformed; the env reports that)."""


class ToolCall(_Model):
    """One OpenAI-format tool call of an assistant turn."""

    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction

    @classmethod
    def create(cls, name: str, arguments: Mapping[str, Any] | str, id: str) -> ToolCall:
        """Builds a tool call from a name and arguments given as a mapping or JSON text."""
        args = arguments if isinstance(arguments, str) else json.dumps(dict(arguments))
        return cls(id=id, function=ToolCallFunction(name=name, arguments=args))


_READ_ONLY = (
    "is read-only: a ChatEnv shares its observation messages between the observations of an "
    "episode. Edit a copy instead: d.thaw() (a deep, plain copy), dict(d) or list(d)"
)


class FrozenDict(dict):  # type: ignore[type-arg]
    """A ``dict`` that cannot be changed (nested lists and dicts are frozen too).

    ``copy.copy`` and ``copy.deepcopy`` return it unchanged, as for a tuple; ``thaw()`` returns a
    deep copy of plain, mutable dicts and lists (``dict(d)`` a shallow one).

    Example:
        >>> d = FrozenDict(role="user", content="hi")
        >>> d == {"role": "user", "content": "hi"}, isinstance(d, dict)
        (True, True)
        >>> d["content"] = "changed"
        Traceback (most recent call last):
        ...
        TypeError: this dict is read-only: a ChatEnv shares its observation messages ...
        >>> mine = d.thaw()
        >>> mine["content"] = "changed"
        >>> d["content"], type(mine).__name__
        ('hi', 'dict')
    """

    __slots__ = ()

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"this dict {_READ_ONLY}")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only
    __ior__ = _read_only

    def thaw(self) -> dict[str, Any]:
        """A deep copy made of plain, mutable dicts and lists."""
        return {k: _thaw(v) for k, v in self.items()}

    def __reduce__(self) -> Any:  # pickle (Ray, multiprocessing) keeps it read-only
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return self


class FrozenList(list):  # type: ignore[type-arg]
    """A ``list`` that cannot be changed; ``thaw()`` gives a plain, mutable deep copy
    (``list(x)`` a shallow one)."""

    __slots__ = ()

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"this list {_READ_ONLY}")

    __setitem__ = __delitem__ = append = extend = insert = pop = remove = _read_only
    clear = sort = reverse = __iadd__ = __imul__ = _read_only

    def thaw(self) -> list[Any]:
        """A deep copy made of plain, mutable dicts and lists."""
        return [_thaw(v) for v in self]

    def __reduce__(self) -> Any:
        return (FrozenList, (list(self),))

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenList:
        return self


def _thaw(value: Any) -> Any:
    return value.thaw() if isinstance(value, (FrozenDict, FrozenList)) else value


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return FrozenDict({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return FrozenList(_freeze(v) for v in value)
    return value


class MessageDict(FrozenDict):
    """The read-only OpenAI-format dict of one ``Message``, as ``ChatEnv`` observations hold them.

    It equals ``message.to_dict()`` and is a ``dict`` to every reader (JSON, chat templates,
    ``Message.model_validate``); ``.message`` is the ``Message`` it shows. Being read-only, the
    same object can appear in every later observation of the episode, so an observation costs
    the same at turn 100 as at turn 1.
    """

    __slots__ = ("message",)

    def __init__(self, message: Message) -> None:
        data = message.to_dict()
        if "tool_calls" in data:
            data["tool_calls"] = _freeze(data["tool_calls"])
        super().__init__(data)
        self.message = message

    def __reduce__(self) -> Any:
        return (MessageDict, (self.message,))


class Message(_Model):
    """One chat message in the OpenAI chat-completions format.

    ``Message.to_dict()`` gives the plain dict that environments use as observations and that
    OpenAI-compatible APIs and chat templates accept.
    """

    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    """For ``role="tool"``: the id of the call this message answers."""
    name: str | None = None
    """For ``role="tool"``: the tool's name (optional for other roles)."""

    @model_validator(mode="after")
    def _check_roles(self) -> Message:
        if self.tool_calls and self.role != "assistant":
            raise ValueError(
                f"only assistant messages may carry tool_calls, got role={self.role!r}"
            )
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The message as a plain OpenAI-format dict (keys that are ``None`` are left out)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [tc.model_dump() for tc in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out

    @classmethod
    def coerce(cls, value: Message | Mapping[str, Any]) -> Message:
        """Accepts a ``Message`` or an OpenAI-format dict and returns a ``Message``."""
        if isinstance(value, Message):
            return value
        if type(value) is MessageDict:  # a ChatEnv observation's message: no validation again
            return value.message
        return cls.model_validate(dict(value))


class Usage(_Model):
    """Token counts of one or more model calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class GenerationRequest(_Model):
    """What a policy is asked: continue this conversation, optionally with these tools."""

    messages: list[Message]
    tools: list[dict[str, Any]] | None = None
    """OpenAI tool schemas (``{"type": "function", "function": {...}}``) the model may call."""


class Completion(_Model):
    """One assistant turn sampled from a policy, with token-level data when the policy has it.

    Local policies (``HFPolicy``) fill ``prompt_token_ids``, ``token_ids`` and ``logprobs`` so
    the trainer can compute its loss on exactly the sampled tokens; API policies leave them
    ``None``.
    """

    message: Message
    prompt_token_ids: list[int] | None = None
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None

    @model_validator(mode="after")
    def _check(self) -> Completion:
        if self.message.role != "assistant":
            raise ValueError(
                f"a completion must be an assistant message, got {self.message.role!r}"
            )
        if (
            self.logprobs is not None
            and self.token_ids is not None
            and len(self.logprobs) != len(self.token_ids)
        ):
            raise ValueError(
                f"logprobs ({len(self.logprobs)}) and token_ids ({len(self.token_ids)}) "
                "must have the same length"
            )
        return self


class Timings(_Model):
    """Wall-clock seconds spent in each part of an episode."""

    env_s: float = 0.0
    """In ``reset``/``step`` of the environment (tools and sandboxes included)."""
    policy_s: float = 0.0
    """Waiting for the policy."""
    total_s: float = 0.0


def _finite_or_none(v: float | None) -> float | None:
    if v is None:
        return None
    v = float(v)
    if math.isnan(v):
        return None
    return v


class Trajectory(_Model):
    """One episode: the whole conversation, its rewards and how it ended.

    Attributes are JSON-serializable; ``Trajectory.model_validate_json(t.model_dump_json())``
    gives back an equal object.
    """

    env_id: str
    seed: int | None = None
    task_id: str | None = None
    group_index: int = 0
    """Position of this trajectory inside its ``TrajectoryGroup``."""
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    completions: list[Completion] = Field(default_factory=list)
    """The policy's samples, one per assistant turn, in order (token data when known)."""
    branches: list[list[Completion]] = Field(default_factory=list)
    """An agent episode's further training sequences: when the agent rewrote its history (or
    ran several conversations), the calls that do not continue the main conversation
    (``completions``) form branches, each a list of completions in call order that
    ``render_trajectory`` renders as its own sequence with the episode's reward. Empty for
    ``ChatEnv`` episodes and agents that only ever extend one conversation."""
    step_rewards: list[float] = Field(default_factory=list)
    """The reward returned by each ``env.step``."""
    reward: float | None = None
    """The total reward; ``None`` when it could not be computed (see ``error``/``metrics``)."""
    reward_breakdown: dict[str, float | None] = Field(default_factory=dict)
    metrics: dict[str, JsonValue] = Field(default_factory=dict)
    info: dict[str, JsonValue] = Field(default_factory=dict)
    """The last ``info`` the env returned (JSON values only). It describes what the *model* did
    (an env may put the submitted answer here); rewards never read a reference from it."""
    reference: JsonValue = None
    """The task's reference answer (``Task.reference``, or a TRL dataset's ``answer`` column):
    what answer-checking rewards (``exact_match``, ``numeric_match``) compare against. It comes
    from the task, never from the env's step info; ``None`` when the task has none."""
    outcome: Outcome = "ok"
    error: str | None = None
    """The error text for every outcome other than ``ok``/``truncated``."""
    timings: Timings = Field(default_factory=Timings)
    usage: Usage | None = None
    """Token counts summed over the policy calls, when the policy reports them."""

    @field_validator("reward", mode="before")
    @classmethod
    def _nan_is_none(cls, v: Any) -> Any:
        return _finite_or_none(v) if isinstance(v, (int, float)) else v

    @property
    def num_turns(self) -> int:
        """Number of assistant turns."""
        return sum(1 for m in self.messages if m.role == "assistant")

    @property
    def failed(self) -> bool:
        """True when the episode ended in an error (its reward must not be trusted)."""
        return self.outcome not in ("ok", "truncated")

    def message_dicts(self) -> list[dict[str, Any]]:
        """The conversation as OpenAI-format dicts."""
        return [m.to_dict() for m in self.messages]


class TrajectoryGroup(_Model):
    """Trajectories of the same task (same env, seed and options), as GRPO compares them."""

    env_id: str
    seed: int | None = None
    task_id: str | None = None
    trajectories: list[Trajectory] = Field(default_factory=list)
    outcome: Literal["ok", "judge_error"] = "ok"
    """``judge_error`` when a group reward (an LLM judge) could not score this group."""
    error: str | None = None
    metrics: dict[str, JsonValue] = Field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.trajectories)

    def __iter__(self) -> Iterator[Trajectory]:  # type: ignore[override]
        return iter(self.trajectories)

    def __getitem__(self, i: int) -> Trajectory:
        return self.trajectories[i]

    @property
    def rewards(self) -> list[float | None]:
        """The total reward of each trajectory, in order (``None`` where unknown)."""
        return [t.reward for t in self.trajectories]


M = TypeVar("M", bound=BaseModel)


def write_jsonl(path: str | Path, items: Iterable[BaseModel], *, append: bool = False) -> int:
    """Writes models to a JSON-lines file, one per line; returns how many were written.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "t.jsonl")
        >>> write_jsonl(p, [Trajectory(env_id="x")])
        1
        >>> read_jsonl(p, Trajectory)[0].env_id
        'x'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("a" if append else "w", encoding="utf-8") as f:
        for item in items:
            f.write(item.model_dump_json())
            f.write("\n")
            n += 1
    return n


def read_jsonl(path: str | Path, model: type[M]) -> list[M]:
    """Reads a JSON-lines file written by :func:`write_jsonl` into models of type ``model``.

    Raises:
        ValueError: a line is not valid for ``model``; the message names the file and line.
    """
    out: list[M] = []
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(model.model_validate_json(line))
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: not a valid {model.__name__}: {e}") from e
    return out
