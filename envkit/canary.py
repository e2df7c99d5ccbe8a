"""``Canary``: a known hack of an environment's kind, declared by the env so ``envkit validate``
can check that it earns nothing.

A canary is a scripted policy with a name: ``act(env)`` is called before each assistant turn
with the env (after ``reset``, its ``task``, ``messages`` and ``turn`` are current) and returns
the next assistant turn (a string, or a message dict with ``content`` and/or ``tool_calls``).
``envkit validate`` plays it on a few seeds and reports a finding when it earns more than the
floor (the reward of an empty reply).

Example:
    >>> from envkit.canary import Canary
    >>> from envkit.env import ChatEnv
    >>> class Quiz(ChatEnv):
    ...     canaries = (Canary("claim", "claims success", lambda env: "All tests passed."),)
    >>> [c.name for c in Quiz.canaries]
    ['claim']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Canary", "tool_call_turn"]


@dataclass(frozen=True)
class Canary:
    """A known hack: scripted assistant turns that must earn no more than the floor.

    Attributes:
        name: A short identifier (``"sys-exit"``), unique within the env's canaries.
        description: What the hack tries, in one sentence.
        act: ``act(env) -> turn``: the next assistant turn given the env (the unwrapped
            ``ChatEnv``, after ``reset``; ``env.turn`` is the number of turns played so far).
    """

    name: str
    description: str
    act: Callable[[Any], Any]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"a Canary needs a non-empty name, got {self.name!r}")
        if not callable(self.act):
            raise TypeError(
                f"Canary {self.name!r}: act must be a callable act(env) -> turn, got "
                f"{type(self.act).__name__}"
            )


def tool_call_turn(
    *calls: tuple[str, Mapping[str, Any] | str], content: str | None = None
) -> dict[str, Any]:
    """An assistant turn that calls tools: ``(name, arguments)`` pairs, arguments a dict or raw
    JSON text (raw text lets a canary send malformed arguments).

    Example:
        >>> turn = tool_call_turn(("submit", {"answer": "42"}))
        >>> turn["tool_calls"][0]["function"]
        {'name': 'submit', 'arguments': '{"answer": "42"}'}
    """
    import json

    tool_calls = []
    for i, (name, args) in enumerate(calls):
        text = args if isinstance(args, str) else json.dumps(dict(args))
        tool_calls.append(
            {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": text}}
        )
    return {"role": "assistant", "content": content, "tool_calls": tool_calls}
