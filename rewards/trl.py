"""``to_trl``: any envkit reward, rubric or judge as a TRL ``GRPOTrainer`` reward function.

TRL calls a reward function with ``prompts``, ``completions``, ``completion_ids`` and every other
dataset column as keyword lists (plus ``trainer_state``, ``log_metric``...), one row per
completion, the ``num_generations`` completions of a prompt next to each other. The function
``to_trl`` returns turns each row into a ``Trajectory`` (the prompt's messages, then the
completion; the ``answer`` column as ``Trajectory.reference``, the reference answer that
``exact_match``/``numeric_match`` read; every other dataset column in ``info``), groups
consecutive rows of the same prompt (or fixed ``group_size`` chunks) into ``TrajectoryGroup``\\ s
so a judge sees each prompt's completions together, and returns one ``float | None`` per row
(TRL ignores ``None``: a judge error never crashes training).

Example:
    >>> from envkit.rewards import to_trl
    >>> fn = to_trl("numeric_match")
    >>> import asyncio
    >>> asyncio.run(fn(prompts=["2+2?", "2+2?"], completions=["4", "5"], answer=[4, 4]))
    [1.0, 0.0]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from envkit.rewards.registry import REFERENCE_PARAM
from envkit.rewards.scoring import Scorer, as_scorer, ascore_groups
from envkit.types import Message, ToolCall, Trajectory, TrajectoryGroup

__all__ = ["TRLReward", "to_trl"]

# Keyword arguments TRL adds that are not dataset columns.
_TRL_EXTRAS = {"trainer_state", "log_extra", "log_metric", "environments", "completion_ids"}
_MESSAGE_KEYS = {"role", "content", "tool_calls", "tool_call_id", "name"}


def _text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks: keep the text parts
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(content)


def _tool_calls(raw: Any) -> list[ToolCall] | None:
    if not raw:
        return None
    calls = []
    for k, call in enumerate(raw):
        fn = call.get("function", call)
        args = fn.get("arguments", {})
        calls.append(
            ToolCall.create(
                str(fn.get("name", "")),
                args if isinstance(args, (str, dict)) else json.dumps(args),
                id=str(call.get("id") or f"call_{k}"),
            )
        )
    return calls


def _message(raw: Any, default_role: str) -> Message:
    if isinstance(raw, Message):
        return raw
    if isinstance(raw, str):
        return Message(role=default_role, content=raw)  # type: ignore[arg-type]
    if not isinstance(raw, dict):
        raise TypeError(
            f"a TRL prompt/completion item must be a str or a message dict, got {raw!r}"
        )
    data = {k: v for k, v in raw.items() if k in _MESSAGE_KEYS}
    data["content"] = _text(data.get("content"))
    data["tool_calls"] = (
        _tool_calls(data.get("tool_calls")) if data.get("role") == "assistant" else None
    )
    if data.get("role") == "tool" and not data.get("tool_call_id"):
        data["tool_call_id"] = "unknown"
    return Message.model_validate(data)


def _messages(raw: Any, default_role: str) -> list[Message]:
    if isinstance(raw, (str, dict, Message)):
        return [_message(raw, default_role)]
    return [_message(m, default_role) for m in raw]


def _jsonable(value: Any) -> Any:
    return json.loads(
        json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else repr(o))
    )


class TRLReward:
    """A TRL reward function wrapping an envkit scorer (made by ``to_trl``); async.

    Attributes:
        scorer: The envkit reward, rubric or judge.
        group_size: ``None``: consecutive rows with the same prompt form a group; an int: rows
            are grouped in chunks of that size (pass TRL's ``num_generations``).
        last_groups: The groups of the latest call (for inspection and logging).
    """

    def __init__(self, scorer: Scorer, *, group_size: int | None, env_id: str) -> None:
        self.scorer = scorer
        self.group_size = group_size
        self.env_id = env_id
        self.__name__ = scorer.name  # TRL names the reward column after it
        self.last_groups: list[TrajectoryGroup] = []

    def __repr__(self) -> str:
        return f"to_trl({self.scorer!r})"

    def _spans(self, prompts: Sequence[Any]) -> list[tuple[int, int]]:
        n = len(prompts)
        if self.group_size is not None:
            if n % self.group_size:
                raise ValueError(
                    f"TRL passed {n} completions, not a multiple of group_size={self.group_size}; "
                    "set group_size to the trainer's num_generations (or None)"
                )
            return [(s, s + self.group_size) for s in range(0, n, self.group_size)]
        keys = [json.dumps(p, sort_keys=True, default=repr) for p in prompts]
        spans, start = [], 0
        for i in range(1, n + 1):
            if i == n or keys[i] != keys[start]:
                spans.append((start, i))
                start = i
        return spans

    async def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        """TRL's reward-function signature: one reward (or ``None``) per completion."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        columns = {k: v for k, v in kwargs.items() if k not in _TRL_EXTRAS}
        trajs = []
        for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            info = {k: _jsonable(v[i]) for k, v in columns.items() if isinstance(v, (list, tuple))}
            trajs.append(
                Trajectory(
                    env_id=self.env_id,
                    messages=[*_messages(prompt, "user"), *_messages(completion, "assistant")],
                    reference=info.pop(REFERENCE_PARAM, None),
                    info=info,
                )
            )
        groups = []
        for start, end in self._spans(prompts):
            members = trajs[start:end]
            for k, t in enumerate(members):
                t.group_index = k
            groups.append(TrajectoryGroup(env_id=self.env_id, trajectories=members))
        report = await ascore_groups(groups, self.scorer)
        self.last_groups = groups
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            log_metric(f"envkit/{self.__name__}/errors", float(report.errors))
            log_metric(f"envkit/{self.__name__}/judge_errors", float(report.judge_errors))
        return [t.reward for g in groups for t in g]


def to_trl(reward: Any, *, group_size: int | None = None, env_id: str = "trl") -> TRLReward:
    """A TRL ``GRPOTrainer`` reward function from an envkit reward, rubric or judge.

    Args:
        reward: A reward name, function, ``Reward``, ``Rubric`` or ``RulerJudge``.
        group_size: Group rows in chunks of this size (TRL's ``num_generations``); ``None``
            groups consecutive rows that share a prompt.
        env_id: The ``env_id`` of the trajectories built from TRL's rows.

    Returns:
        An async callable ``(prompts, completions, **columns) -> list[float | None]``; pass it
        in ``reward_funcs``.
    """
    if group_size is not None and (not isinstance(group_size, int) or group_size < 1):
        raise ValueError(f"group_size must be a positive int or None, got {group_size!r}")
    return TRLReward(as_scorer(reward), group_size=group_size, env_id=env_id)
