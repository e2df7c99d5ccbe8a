"""``envkit/Arithmetic-v0``: integer arithmetic with feedback and retries.

The model is asked to compute an expression such as ``7 * 8``; the last integer in its reply is
its answer. A wrong answer gets "not correct, try again" and the model may retry until
``max_turns``. The reward favours early correct answers: ``1 - (turn - 1) / max_turns`` for a
correct answer at ``turn`` (1.0 on the first try), 0 otherwise.

Example:
    >>> import envkit
    >>> env = envkit.make("Arithmetic-v0", operators="+", max_operand=9, max_turns=2)
    >>> obs, info = env.reset(seed=0)
    >>> obs[-1]["content"]
    'What is 8 + 6? Reply with just the number.'
    >>> _, reward, terminated, truncated, _ = env.step("14")
    >>> reward, terminated
    (1.0, True)
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from envkit.env import ChatEnv, Feedback, Task
from envkit.environments._parsing import last_integer
from envkit.types import Message

__all__ = ["ArithmeticEnv"]

_OPS: dict[str, Callable[[int, int], int]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}


class ArithmeticEnv(ChatEnv):
    """Compute an integer expression; retry after "not correct" up to ``max_turns``.

    Args:
        operators: Which of ``+``, ``-`` and ``*`` may appear (e.g. ``"+*"``).
        min_operand: Smallest operand.
        max_operand: Largest operand.
        num_operands: How many operands the expression has (2 or more).
        max_turns: Attempts allowed.
        system_prompt: Optional system message.
        render_mode: ``"ansi"``, ``"human"`` or ``None``.
    """

    def __init__(
        self,
        *,
        operators: str = "+-*",
        min_operand: int = 0,
        max_operand: int = 9,
        num_operands: int = 2,
        max_turns: int = 3,
        system_prompt: str | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(max_turns=max_turns, system_prompt=system_prompt, render_mode=render_mode)
        ops = [op for op in operators if not op.isspace()]
        unknown = sorted(set(ops) - set(_OPS))
        if not ops or unknown:
            raise ValueError(
                f"operators={operators!r}: use a non-empty string of {''.join(_OPS)}"
                + (f" (unknown: {unknown})" if unknown else "")
            )
        if min_operand > max_operand:
            raise ValueError(f"min_operand ({min_operand}) must be <= max_operand ({max_operand})")
        if num_operands < 2:
            raise ValueError(f"num_operands must be >= 2, got {num_operands}")
        self.operators = sorted(set(ops), key=ops.index)
        self.min_operand = min_operand
        self.max_operand = max_operand
        self.num_operands = num_operands

    def make_task(self, options: dict[str, Any] | None) -> Task:
        rng = self.np_random
        operands = [
            int(rng.integers(self.min_operand, self.max_operand + 1))
            for _ in range(self.num_operands)
        ]
        ops = [
            self.operators[int(rng.integers(len(self.operators)))]
            for _ in range(self.num_operands - 1)
        ]
        expression = str(operands[0])
        for op, x in zip(ops, operands[1:]):
            expression += f" {op} {x}"
        answer = _evaluate(operands, ops)
        prompt = f"What is {expression}? Reply with just the number."
        return Task(
            messages=[{"role": "user", "content": prompt}],
            id=f"{expression}",
            answer=answer,
            info={"expression": expression},
        )

    def respond(self, message: Message) -> Feedback:
        guess = last_integer(message.content)
        assert self.task is not None
        correct = guess is not None and guess == self.task.answer
        info = {"correct": correct, "parsed": guess is not None}
        if correct:
            return Feedback(reward=1.0 - (self.turn - 1) / self.max_turns, done=True, info=info)
        if guess is None:
            text = "I could not find a number in your reply. Reply with just the number."
        else:
            text = f"{guess} is not correct. Try again."
        return Feedback(reward=0.0, messages=[{"role": "user", "content": text}], info=info)


def _evaluate(operands: list[int], ops: list[str]) -> int:
    """Evaluates with the usual precedence (``*`` before ``+``/``-``), without ``eval``."""
    terms: list[int] = [operands[0]]
    signs: list[str] = []
    for op, x in zip(ops, operands[1:]):
        if op == "*":
            terms[-1] = terms[-1] * x
        else:
            signs.append(op)
            terms.append(x)
    total = terms[0]
    for sign, term in zip(signs, terms[1:]):
        total = _OPS[sign](total, term)
    return total
