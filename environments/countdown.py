"""``envkit/Countdown-v0``: reach a target number from given numbers with + - * / and parentheses.

The model gets a few numbers and a target, and answers with an expression inside
``<answer></answer>`` (``\\boxed{}`` or a last line holding just the expression are read too; a
trailing ``= 75`` is ignored). The expression is parsed by a small safe parser (no ``eval``) and
evaluated exactly with fractions. If it cannot be read, uses a number that was not given (or
more often than given), divides by zero or misses the target, the env says so and the model may
retry until ``max_turns``. A correct answer at ``turn`` is worth ``1 - (turn - 1) / max_turns``
(1.0 on the first try), anything else 0. Every task is solvable: the target is the value of a
random expression over the numbers (kept as the task's ``reference``, copied to
``Trajectory.reference``; other expressions reaching the target are just as correct, so
``exact_match`` against it is no substitute for the env's reward). The expression the model
submitted is in the step info's ``submitted``.

Example:
    >>> import envkit
    >>> env = envkit.make("Countdown-v0", num_numbers=3, max_number=10, max_turns=2)
    >>> obs, info = env.reset(seed=0)
    >>> info["numbers"], info["target"]
    ([9, 7, 6], 13)
    >>> obs, reward, terminated, _, info = env.step("<answer>9 * 7 - 6</answer>")
    >>> reward, terminated, info["error"]
    (0.0, False, 'wrong_value')
    >>> obs[-1]["content"]
    'Your expression 9 * 7 - 6 evaluates to 57, not 13. Try again: make 13 from 9, 7, 6.'
    >>> _, reward, terminated, _, _ = env.step("7 + 6 = 13")
    >>> reward, terminated
    (0.5, True)
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from envkit.env import ChatEnv, Feedback, Task
from envkit.environments._checks import require_int, require_range
from envkit.environments._expression import ExpressionError, parse_expression
from envkit.parsing import find_answer
from envkit.types import Message

__all__ = ["CountdownEnv", "random_solution"]

_NUMBER_DRAWS = 2000  # how many sets of numbers make_task tries before giving up
_EXPRESSIONS_PER_DRAW = 8  # random expressions tried per set of numbers
_EXAMPLE = "<answer>(1 + 2) * 3</answer>"
_LABEL_RE = re.compile(r"^[A-Za-z][A-Za-z ]{0,30}:\s*")
_WRAPPERS = ("\\(", "\\)", "\\[", "\\]")


def random_solution(
    rng: np.random.Generator, numbers: Sequence[int], count: int
) -> tuple[Fraction, str]:
    """A random expression over ``count`` of ``numbers``, and its value.

    Intermediate results are positive whole numbers (``a - b`` only when ``a > b``, ``a / b``
    only when ``b`` divides ``a``), as in the game show, so the value is a positive integer.

    Args:
        rng: The random generator (an env's ``np_random``).
        numbers: Positive whole numbers to draw from.
        count: How many of them the expression uses (each at most once), ``>= 1``.

    Example:
        >>> value, text = random_solution(np.random.default_rng(0), [3, 7, 25], 3)
        >>> parse_expression(text).value == value
        True
    """
    picked = rng.permutation(len(numbers))[:count]
    items = [(Fraction(int(numbers[i])), str(int(numbers[i]))) for i in picked]
    while len(items) > 1:
        i = int(rng.integers(len(items)))
        j = int(rng.integers(len(items) - 1))
        j += j >= i
        (a, ta), (b, tb) = items[i], items[j]
        if a < b:
            (a, ta), (b, tb) = (b, tb), (a, ta)
        choices = [("+", a + b), ("*", a * b)]
        if a > b:
            choices.append(("-", a - b))
        if b > 1 and a % b == 0:
            choices.append(("/", a / b))
        op, value = choices[int(rng.integers(len(choices)))]
        items = [item for k, item in enumerate(items) if k not in (i, j)]
        items.append((value, f"({ta} {op} {tb})"))
    value, text = items[0]
    if count > 1:
        text = text[1:-1]
    return value, text


def _format(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value} (a fraction)"


class CountdownEnv(ChatEnv):
    """Reach a target from given numbers with + - * / and parentheses; retry on feedback.

    Args:
        num_numbers: How many numbers the model gets (2 or more).
        min_number: Smallest number (1 or more).
        max_number: Largest number.
        min_target: Smallest target (1 or more).
        max_target: Largest target.
        use_all: If True every number must be used exactly once; otherwise at most once.
        max_turns: Attempts allowed.
        system_prompt: Optional system message.
        render_mode: ``"ansi"``, ``"human"`` or ``None``.

    ``reset(options={"numbers": [...], "target": N})`` poses that task instead of a random one
    (it may be unsolvable; its reference answer is None).

    Raises:
        TypeError: a count or bound is not an int.
        ValueError: a bound is out of range, or no expression over the numbers can reach
            ``min_target``.
    """

    step_in_thread = False  # parsing and checking an answer take microseconds

    def __init__(
        self,
        *,
        num_numbers: int = 4,
        min_number: int = 1,
        max_number: int = 50,
        min_target: int = 10,
        max_target: int = 100,
        use_all: bool = False,
        max_turns: int = 3,
        system_prompt: str | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(max_turns=max_turns, system_prompt=system_prompt, render_mode=render_mode)
        self.num_numbers = require_int("num_numbers", num_numbers, minimum=2)
        self.min_number = require_int("min_number", min_number, minimum=1)
        self.max_number = require_int("max_number", max_number)
        self.min_target = require_int("min_target", min_target, minimum=1)
        self.max_target = require_int("max_target", max_target)
        require_range("min_number", min_number, "max_number", max_number)
        require_range("min_target", min_target, "max_target", max_target)
        if not isinstance(use_all, bool):
            raise TypeError(f"use_all must be a bool, got {type(use_all).__name__} {use_all!r}")
        self.use_all = use_all
        # Every intermediate value of k numbers <= m is at most max(m, 2) ** k.
        if math.log(min_target) > num_numbers * math.log(max(max_number, 2)) + 1e-9:
            raise ValueError(
                f"min_target={min_target} cannot be reached: {num_numbers} numbers of at most "
                f"{max_number} make at most {max(max_number, 2)}**{num_numbers}. Lower "
                "min_target or raise max_number or num_numbers."
            )

    # ------------------------------------------------------------------ tasks
    def make_task(self, options: dict[str, Any] | None) -> Task:
        if options:
            numbers, target = self._task_from_options(options)
            solution = None
        else:
            numbers, target, solution = self._random_task()
        shown = ", ".join(map(str, numbers))
        rule = (
            "use every number exactly once"
            if self.use_all
            else "use each number at most once (you do not have to use all of them)"
        )
        prompt = (
            f"Using the numbers {shown}, make {target}. You may use +, -, *, / and parentheses; "
            f"{rule}. Put your final expression inside <answer></answer>, for example {_EXAMPLE}."
        )
        return Task(
            messages=[{"role": "user", "content": prompt}],
            id=f"{','.join(map(str, numbers))}->{target}",
            answer=solution,
            info={"numbers": numbers, "target": target},
            reference=solution,
        )

    def _random_task(self) -> tuple[list[int], int, str]:
        rng = self.np_random
        for _ in range(_NUMBER_DRAWS):
            numbers = [
                int(x) for x in rng.integers(self.min_number, self.max_number + 1, self.num_numbers)
            ]
            for _ in range(_EXPRESSIONS_PER_DRAW):
                count = (
                    self.num_numbers if self.use_all else int(rng.integers(2, self.num_numbers + 1))
                )
                value, text = random_solution(rng, numbers, count)
                if value.denominator == 1 and self.min_target <= value <= self.max_target:
                    return numbers, int(value), text
        raise ValueError(
            f"could not generate a Countdown task with a target in [{self.min_target}, "
            f"{self.max_target}] from {self.num_numbers} numbers in [{self.min_number}, "
            f"{self.max_number}] after {_NUMBER_DRAWS * _EXPRESSIONS_PER_DRAW} random "
            "expressions; widen the target range or change the number range."
        )

    def _task_from_options(self, options: dict[str, Any]) -> tuple[list[int], int]:
        unknown = sorted(set(options) - {"numbers", "target"})
        if unknown or "numbers" not in options or "target" not in options:
            raise ValueError(
                f"Countdown reset options must be {{'numbers': [ints], 'target': int}} (or "
                f"empty for a random task); got keys {sorted(options)}"
            )
        raw = options["numbers"]
        if not isinstance(raw, (list, tuple)) or not raw:
            raise ValueError(f"options['numbers'] must be a non-empty list of ints, got {raw!r}")
        numbers = [require_int("options['numbers'] item", x, minimum=0) for x in raw]
        return numbers, require_int("options['target']", options["target"])

    # ------------------------------------------------------------------ answers
    def respond(self, message: Message) -> Feedback:
        assert self.task is not None
        numbers: list[int] = self.task.info["numbers"]
        target: int = self.task.info["target"]
        retry = f"Try again: make {target} from {', '.join(map(str, numbers))}."
        info: dict[str, Any] = {"correct": False, "error": None, "submitted": None, "value": None}

        def wrong(kind: str, text: str) -> Feedback:
            info["error"] = kind
            return Feedback(messages=[{"role": "user", "content": f"{text} {retry}"}], info=info)

        found = find_answer(message.content, last_line=True)
        if found is None:
            return wrong(
                "no_answer",
                "I could not find an expression in your reply. Put your final expression "
                f"inside <answer></answer>, for example {_EXAMPLE}.",
            )
        text, source = found
        text = _clean(text)
        info["submitted"] = text
        try:
            expression = parse_expression(text)
        except ExpressionError as e:
            where = (
                "I could not find <answer></answer> in your reply, and its last line is not a "
                "valid expression"
                if source == "last_line"
                else "Your expression could not be read"
            )
            return wrong("syntax", f"{where}: {e}.")
        problem = self._number_problem(expression.numbers, numbers)
        if problem:
            return wrong("numbers", f"Your expression {text} {problem}.")
        if expression.value is None:
            return wrong("division_by_zero", f"Your expression {text} has a {expression.error}.")
        info["value"] = str(expression.value)
        if expression.value != target:
            return wrong(
                "wrong_value",
                f"Your expression {text} evaluates to {_format(expression.value)}, not {target}.",
            )
        info["correct"] = True
        return Feedback(reward=1.0 - (self.turn - 1) / self.max_turns, done=True, info=info)

    def _number_problem(self, used: Sequence[int], given: Sequence[int]) -> str | None:
        """What is wrong with the numbers an expression uses, or None."""
        have, need = Counter(given), Counter(used)
        for n in used:
            if n not in have:
                return f"uses {n}, which is not one of the given numbers"
        for n, k in need.items():
            if k > have[n]:
                given_times = "once" if have[n] == 1 else f"{have[n]} times"
                return f"uses {n} {k} times, but it is given {given_times}"
        if self.use_all:
            missing = list((have - need).elements())
            if missing:
                return (
                    "does not use every number exactly once (not used: "
                    f"{', '.join(map(str, missing))})"
                )
        return None


def _clean(text: str) -> str:
    """Drops what commonly surrounds an expression: ``= result``, a label, math delimiters."""
    for wrapper in _WRAPPERS:
        text = text.replace(wrapper, " ")
    text = text.split("=", 1)[0]
    text = _LABEL_RE.sub("", text.strip())
    return text.strip(" \t\n`$.")
