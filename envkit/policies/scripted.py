"""Policies driven by Python code: a fixed script of turns, or any callable.

Both are meant for tests, benchmarks and baselines. They accept what an env accepts as an
action: a string, an OpenAI-format assistant dict, a ``Message`` or a ``Completion``.

Example:
    >>> from envkit.policies import ScriptedPolicy
    >>> p = ScriptedPolicy(["first", {"role": "assistant", "content": "second"}])
    >>> [p([{"role": "user", "content": "hi"}]).message.content for _ in range(2)]
    ['first', 'second']
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from envkit.policies.base import BasePolicy
from envkit.spaces import validate_assistant_turn
from envkit.types import Completion, GenerationRequest

__all__ = ["CallablePolicy", "ScriptedPolicy"]


def _to_completion(turn: Any) -> Completion:
    if isinstance(turn, Completion):
        return turn
    return Completion(message=validate_assistant_turn(turn))


class CallablePolicy(BasePolicy):
    """Wraps ``fn(messages, tools) -> turn`` (sync or async) as a policy.

    ``messages`` is the list of OpenAI-format dicts, ``tools`` the tool schemas or ``None``.

    Args:
        fn: The function that produces the assistant turn.
        delay: Seconds to sleep before each answer (to simulate a slow model in benchmarks).
    """

    def __init__(self, fn: Callable[[list[dict[str, Any]], Any], Any], *, delay: float = 0.0):
        if not callable(fn):
            raise TypeError(f"CallablePolicy needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self.delay = delay

    async def _one(self, request: GenerationRequest) -> Completion:
        if self.delay:
            await asyncio.sleep(self.delay)
        messages = [m.to_dict() for m in request.messages]
        out = self.fn(messages, request.tools)
        if inspect.isawaitable(out):
            out = await out
        return _to_completion(out)

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        if len(requests) == 1:  # the common case in rollouts: skip gather's task overhead
            return [await self._one(requests[0])]
        return list(await asyncio.gather(*(self._one(r) for r in requests)))


class ScriptedPolicy(BasePolicy):
    """Answers with the given turns in order, cycling when ``cycle=True``.

    Args:
        turns: The assistant turns to play.
        cycle: Start over after the last turn instead of raising.

    Raises:
        RuntimeError (from ``agenerate``): the script ran out and ``cycle`` is False.
    """

    def __init__(self, turns: Sequence[Any], *, cycle: bool = False) -> None:
        if not turns:
            raise ValueError("ScriptedPolicy needs at least one turn")
        self.turns = [_to_completion(t) for t in turns]
        self._it = itertools.cycle(self.turns) if cycle else iter(self.turns)

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        out = []
        for _ in requests:
            try:
                out.append(next(self._it))
            except StopIteration:
                raise RuntimeError(
                    f"ScriptedPolicy ran out of its {len(self.turns)} turns; pass more turns or "
                    "cycle=True"
                ) from None
        return out
