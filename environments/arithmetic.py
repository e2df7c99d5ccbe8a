"""``envkit/Arithmetic-v0``: integer arithmetic with feedback and retries.

The model is asked to compute an expression such as ``7 * 8``; its answer is the last integer of
the answer its reply marks (``<answer>``, ``\\boxed{}``, "the answer is ...", see
``envkit.parsing.find_answer``), or of the whole reply when it marks none. The task's
``reference`` (copied to ``Trajectory.reference``) is the correct integer. A wrong answer gets
"not correct, try again" and the model may retry until ``max_turns``. The reward favours early
correct answers: ``1 - (turn - 1) / max_turns`` for a correct answer at ``turn`` (1.0 on the
first try), 0 otherwise.

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
from envkit.environments._checks import require_int, require_range
from envkit.parsing import extract_answer, last_integer
from envkit.types import Message

__all__ = ["ArithmeticEnv", "canonical_expression"]

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

    Raises:
        TypeError: ``operators`` is not a str, or an operand bound is not an int.
        ValueError: unknown operators, ``min_operand > max_operand`` or ``num_operands < 2``.
    """

    step_in_thread = False  # checking an answer takes microseconds

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
        if not isinstance(operators, str):
            raise TypeError(f"operators must be a str such as '+-*', got {operators!r}")
        ops = [op for op in operators if not op.isspace()]
        unknown = sorted(set(ops) - set(_OPS))
        if not ops or unknown:
            raise ValueError(
                f"operators={operators!r}: use a non-empty string of {''.join(_OPS)}"
                + (f" (unknown: {unknown})" if unknown else "")
            )
        self.min_operand = require_int("min_operand", min_operand)
        self.max_operand = require_int("max_operand", max_operand)
        require_range("min_operand", min_operand, "max_operand", max_operand)
        self.num_operands = require_int("num_operands", num_operands, minimum=2)
        self.operators = sorted(set(ops), key=ops.index)

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
        for op, x in zip(ops, operands[1:], strict=True):
            expression += f" {op} {x}"
        answer = _evaluate(operands, ops)
        prompt = f"What is {expression}? Reply with just the number."
        return Task(
            messages=[{"role": "user", "content": prompt}],
            id=f"{expression}",
            answer=answer,
            info={"expression": expression, "canonical": canonical_expression(operands, ops)},
            reference=answer,
        )

    def respond(self, message: Message) -> Feedback:
        guess = last_integer(extract_answer(message.content) or message.content)
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


def canonical_expression(operands: list[int], ops: list[str]) -> str:
    """The expression with the terms of its sum and the factors of each product sorted.

    Two tasks are the same problem when they differ only in the order of commutative operands
    (``3 + 4`` and ``4 + 3``, ``2 * 5 + 1`` and ``1 + 5 * 2``): they have the same canonical form,
    which ``reset`` returns as ``info["canonical"]`` (use it to keep held-out tasks out of
    training). Subtracted terms are listed after the added ones.

    Example:
        >>> canonical_expression([4, 3], ["+"]), canonical_expression([3, 4], ["+"])
        ('3 + 4', '3 + 4')
        >>> canonical_expression([5, 2, 1, 3], ["*", "-", "+"])
        '2 * 5 + 3 - 1'
    """
    terms: list[tuple[str, list[int]]] = [("+", [operands[0]])]
    for op, x in zip(ops, operands[1:], strict=True):
        if op == "*":
            terms[-1][1].append(x)
        else:
            terms.append((op, [x]))
    rendered = {
        sign: sorted(" * ".join(map(str, sorted(f))) for s, f in terms if s == sign)
        for sign in "+-"
    }
    return " - ".join([" + ".join(rendered["+"]), *rendered["-"]])


def _evaluate(operands: list[int], ops: list[str]) -> int:
    """Evaluates with the usual precedence (``*`` before ``+``/``-``), without ``eval``."""
    terms: list[int] = [operands[0]]
    signs: list[str] = []
    for op, x in zip(ops, operands[1:], strict=True):
        if op == "*":
            terms[-1] = terms[-1] * x
        else:
            signs.append(op)
            terms.append(x)
    total = terms[0]
    for sign, term in zip(signs, terms[1:], strict=True):
        total = _OPS[sign](total, term)
    return total
