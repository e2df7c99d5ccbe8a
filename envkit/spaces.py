"""Gymnasium spaces for chat environments: conversations (observations) and assistant turns.

Example:
    >>> from envkit.spaces import AssistantTurn, Conversation
    >>> space = AssistantTurn(seed=0)
    >>> space.contains("hello") and space.contains({"role": "assistant", "content": "hi"})
    True
    >>> Conversation().contains([{"role": "user", "content": "2+2?"}])
    True
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.spaces import Space
from pydantic import ValidationError

from envkit.types import Message

__all__ = ["AssistantTurn", "Conversation", "validate_assistant_turn"]

_CHARSET = string.ascii_letters + string.digits + " .,:;!?+-*/=()[]{}'\"\n"


def _random_text(rng: np.random.Generator, min_length: int, max_length: int) -> str:
    n = int(rng.integers(min_length, max_length + 1))
    idx = rng.integers(0, len(_CHARSET), size=n)
    return "".join(_CHARSET[i] for i in idx)


def validate_assistant_turn(action: Any) -> Message:
    """Turns an action into an assistant ``Message``, or raises with what was expected.

    Accepts a string (the assistant's text), an OpenAI-format assistant message dict
    (``role`` may be left out), a ``Message`` or an object with a ``message`` attribute that is
    one (an ``envkit.types.Completion``).

    Raises:
        InvalidActionError: the action is none of those.
    """
    from envkit.errors import InvalidActionError

    expected = (
        "Expected the assistant's turn: a string, or an OpenAI-format message dict such as "
        '{"role": "assistant", "content": "...", "tool_calls": [...]}'
    )
    if isinstance(action, str):
        return Message(role="assistant", content=action)
    message = getattr(action, "message", action)
    if isinstance(message, Message):
        if message.role != "assistant":
            raise InvalidActionError(f"{expected}; got a Message with role={message.role!r}.")
        return message
    if isinstance(message, dict):
        data = dict(message)
        data.setdefault("role", "assistant")
        if data["role"] != "assistant":
            raise InvalidActionError(f"{expected}; got a dict with role={data['role']!r}.")
        if data.get("content") is None and not data.get("tool_calls"):
            raise InvalidActionError(f"{expected}; the dict has neither content nor tool_calls.")
        try:
            return Message.model_validate(data)
        except ValidationError as e:
            raise InvalidActionError(f"{expected}; the dict is not valid: {e}") from e
    raise InvalidActionError(f"{expected}; got {type(action).__name__}: {action!r:.200}.")


class AssistantTurn(Space[Any]):
    """The action space of a ``ChatEnv``: one assistant turn.

    Members are strings and OpenAI-format assistant message dicts (with ``content`` and/or
    ``tool_calls``). ``sample()`` draws random text, or with ``tool_names`` sometimes a random
    tool call, reproducibly after ``seed()``.

    Args:
        max_length: The longest sampled text.
        tool_names: Tools that sampled turns may call.
        seed: Seed of the space's generator.
    """

    def __init__(
        self,
        max_length: int = 64,
        tool_names: Sequence[str] = (),
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.max_length = max_length
        self.tool_names = tuple(tool_names)
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> str | dict[str, Any]:
        """A random assistant turn: usually text, sometimes a tool call if tools are known."""
        if mask is not None or probability is not None:
            raise ValueError("AssistantTurn.sample does not support masks or probabilities")
        rng = self.np_random
        text = _random_text(rng, 0, self.max_length)
        if self.tool_names and rng.random() < 0.5:
            name = self.tool_names[int(rng.integers(len(self.tool_names)))]
            return {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{int(rng.integers(1 << 30))}",
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps({"x": text})},
                    }
                ],
            }
        return text

    def contains(self, x: Any) -> bool:
        if isinstance(x, str):
            return True
        try:
            validate_assistant_turn(x)
        except ValueError:
            return False
        return isinstance(x, (dict, Message))

    def __repr__(self) -> str:
        return f"AssistantTurn(max_length={self.max_length}, tool_names={list(self.tool_names)})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, AssistantTurn)
            and other.max_length == self.max_length
            and other.tool_names == self.tool_names
        )

    def to_jsonable(self, sample_n: Sequence[Any]) -> list[Any]:
        return list(sample_n)

    def from_jsonable(self, sample_n: list[Any]) -> list[Any]:
        return list(sample_n)


class Conversation(Space[list[dict[str, Any]]]):
    """The observation space of a ``ChatEnv``: a list of OpenAI-format message dicts.

    Args:
        max_messages: Upper bound on the conversation length, or ``None`` for no bound.
        seed: Seed of the space's generator.
    """

    def __init__(
        self, max_messages: int | None = None, seed: int | np.random.Generator | None = None
    ) -> None:
        self.max_messages = max_messages
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> list[dict[str, Any]]:
        """A random conversation: a user message, then alternating assistant/user turns."""
        if mask is not None or probability is not None:
            raise ValueError("Conversation.sample does not support masks or probabilities")
        rng = self.np_random
        upper = 6 if self.max_messages is None else max(1, min(6, self.max_messages))
        n = int(rng.integers(1, upper + 1))
        roles = ["user", "assistant"]
        return [{"role": roles[i % 2], "content": _random_text(rng, 1, 32)} for i in range(n)]

    def contains(self, x: Any) -> bool:
        if not isinstance(x, list):
            return False
        if self.max_messages is not None and len(x) > self.max_messages:
            return False
        for m in x:
            if not isinstance(m, dict):
                return False
            try:
                Message.model_validate(m)
            except ValidationError:
                return False
        return True

    def __repr__(self) -> str:
        return f"Conversation(max_messages={self.max_messages})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Conversation) and other.max_messages == self.max_messages

    def to_jsonable(self, sample_n: Sequence[list[dict[str, Any]]]) -> list[Any]:
        return [list(s) for s in sample_n]

    def from_jsonable(self, sample_n: list[Any]) -> list[list[dict[str, Any]]]:
        return [list(s) for s in sample_n]
