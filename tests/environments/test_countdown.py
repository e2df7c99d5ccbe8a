"""``envkit/Countdown-v0`` and its safe expression parser."""

from __future__ import annotations

import asyncio
import doctest
import types
import warnings
from collections import Counter
from fractions import Fraction
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envkit
from envkit import EpisodeOverError
from envkit.environments import _expression, countdown
from envkit.environments._expression import (
    MAX_DEPTH,
    MAX_DIGITS,
    MAX_LENGTH,
    ExpressionError,
    parse_expression,
)
from envkit.environments.countdown import CountdownEnv, random_solution
from envkit.policies import CallablePolicy
from envkit.rollout import collect

CONFIGS: list[dict[str, Any]] = [
    {},
    {"num_numbers": 2, "max_number": 10, "min_target": 1, "max_target": 20},
    {"num_numbers": 6, "min_number": 1, "max_number": 100, "min_target": 100, "max_target": 999},
    {"num_numbers": 3, "max_number": 9, "use_all": True, "max_turns": 2},
    {"num_numbers": 5, "min_number": 20, "max_number": 20, "min_target": 1, "max_target": 50},
]
FIXED = {"numbers": [3, 7, 25, 50], "target": 75}


def short(value: Any) -> str | None:
    """Readable test ids for long string parameters."""
    return (
        value if not isinstance(value, str) or len(value) <= 24 else f"{value[:20]}...{len(value)}"
    )


def make(**kwargs: Any) -> CountdownEnv:
    env = envkit.make("Countdown-v0", **kwargs).unwrapped
    assert isinstance(env, CountdownEnv)
    return env


# ------------------------------------------------------------------ parser: what it accepts
@pytest.mark.parametrize(
    ("text", "value", "numbers"),
    [
        ("(50 - 25) * 3", Fraction(75), (50, 25, 3)),
        ("50 - 25 * 3", Fraction(-25), (50, 25, 3)),
        ("100 - 20 - 5", Fraction(75), (100, 20, 5)),  # left-associative
        ("100 / 10 / 5", Fraction(2), (100, 10, 5)),
        ("7 / 2", Fraction(7, 2), (7, 2)),
        ("1 / 3 * 3", Fraction(1), (1, 3, 3)),  # exact: no float rounding
        ("  ((((4))))  ", Fraction(4), (4,)),
        ("3 × 4 ÷ 2 − 1", Fraction(5), (3, 4, 2, 1)),
        ("\\left(3 \\times 4\\right) \\div 2 \\cdot 5", Fraction(30), (3, 4, 2, 5)),
        ("007 + 1", Fraction(8), (7, 1)),
        (
            "9" * MAX_DIGITS + " * 2",
            Fraction(int("9" * MAX_DIGITS) * 2),
            (int("9" * MAX_DIGITS), 2),
        ),
        ("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH, Fraction(1), (1,)),
    ],
    ids=short,
)
def test_parser_evaluates_exactly(text: str, value: Fraction, numbers: tuple[int, ...]) -> None:
    expression = parse_expression(text)
    assert expression.value == value
    assert expression.numbers == numbers
    assert expression.error is None


# ------------------------------------------------------------------ parser: what it rejects
@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("__import__('os')", "names such as '__import__' are not allowed"),
        ("__import__('os').system('echo pwned')", "names such as '__import__'"),
        ("os.system('ls')", "names such as 'os'"),
        ("(1).__class__", "attribute access"),
        ("x + 1", "names such as 'x'"),
        ("lambda: 1", "names such as 'lambda'"),
        ("1 if 1 else 2", "names such as 'if'"),
        ("abs(3)", "names such as 'abs'"),
        ("2 ** 10", r"power operator \*\*"),
        ("9 ** 9 ** 9", r"power operator \*\*"),
        ("2 ^ 3", r"\^ \(power\)"),
        ("9 // 2", "floor division"),
        ("9 % 2", "% is not allowed"),
        ("3.5 * 2", "decimal"),
        ("1e9", "names such as 'e9'"),
        ("1_000", "names such as '_000'"),
        ("1,000", "commas"),
        ("9" * (MAX_DIGITS + 1), "too large"),
        ("9" * 900, "too large"),
        ("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1), "nested too deeply"),
        ("1+" * MAX_LENGTH + "1", "too long"),
        ("'1' + '2'", "unexpected character"),
        ("[1, 2]", "unexpected character '\\['"),
        ("{1}", "unexpected character"),
        ("1 = 1", "= is not allowed"),
        ("-3 + 5", "unary"),
        ("3 * -2", "unary"),
        ("+3", "unary"),
        ("2(3 + 4)", "expected an operator"),
        ("(2)(3)", "expected an operator"),
        ("2 3", "expected an operator"),
        ("(1 + 2", r"missing '\)'"),
        ("1 + 2)", r"unmatched '\)'"),
        ("()", "expected a number"),
        ("1 +", "expected a number or '\\(' at position 4, found the end"),
        ("", "empty"),
        ("   ", "empty"),
        ("٣ + 1", "unexpected character"),  # non-ASCII digits are not numbers here
    ],
    ids=short,
)
def test_parser_rejects_with_a_clear_message(text: str, match: str) -> None:
    with pytest.raises(ExpressionError, match=match):
        parse_expression(text)


def test_parser_refuses_non_strings() -> None:
    with pytest.raises(TypeError, match="str"):
        parse_expression(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("5 / 0", "division by zero (dividing by 0)"),
        ("5 / (3 - 3)", "division by zero (dividing by (3 - 3), which is 0)"),
        ("1 + 8 / (4 - 2 * 2) * 7", "dividing by (4 - 2 * 2), which is 0"),
        ("1 / 0 + 2 / 0", "division by zero (dividing by 0)"),  # the first one is reported
    ],
)
def test_division_by_zero_is_reported_not_raised(text: str, error: str) -> None:
    expression = parse_expression(text)
    assert expression.value is None
    assert expression.error is not None and error in expression.error


def test_parser_is_exact_on_the_largest_inputs() -> None:
    # The worst accepted input: the longest product of the longest numbers (exact, no overflow).
    factor = "9" * MAX_DIGITS
    per = len(factor) + 1
    text = "*".join([factor] * (MAX_LENGTH // per))
    expression = parse_expression(text)  # its speed: benchmarks/bench_core.py
    assert expression.value == Fraction(int(factor)) ** (MAX_LENGTH // per)


# ------------------------------------------------------------------ gymnasium contract
@pytest.mark.parametrize("kwargs", CONFIGS)
def test_check_env_and_make_without_warnings(kwargs: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(make(**kwargs))
        env = gym.make("envkit/Countdown-v0", **kwargs)
        obs, _ = env.reset(seed=3)
        assert env.observation_space.contains(obs)
        _, reward, *_ = env.step("<answer>1 + 1</answer>")
        assert reward in (0.0, 1.0)
        env.close()


@pytest.mark.parametrize("module", [countdown, _expression], ids=lambda m: m.__name__)
def test_docstring_examples(module: types.ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


# ------------------------------------------------------------------ tasks
@pytest.mark.parametrize("kwargs", CONFIGS)
def test_every_seed_gives_a_solvable_task_within_the_kwargs(kwargs: dict[str, Any]) -> None:
    env = make(**kwargs)
    n = kwargs.get("num_numbers", 4)
    lo, hi = kwargs.get("min_number", 1), kwargs.get("max_number", 50)
    tlo, thi = kwargs.get("min_target", 10), kwargs.get("max_target", 100)
    for seed in range(200):
        _, info = env.reset(seed=seed)
        numbers, target, reference = info["numbers"], info["target"], env.task.answer
        assert len(numbers) == n and all(lo <= x <= hi for x in numbers)
        assert tlo <= target <= thi
        parsed = parse_expression(reference)
        assert parsed.value == target
        assert not Counter(parsed.numbers) - Counter(numbers)  # each number at most once
        if kwargs.get("use_all"):
            assert Counter(parsed.numbers) == Counter(numbers)
        # Solve through the env: the reference answer earns the full reward.
        _, reward, terminated, _, step_info = env.step(f"<answer>{reference}</answer>")
        assert (reward, terminated, step_info["correct"]) == (1.0, True, True), (seed, reference)


@pytest.mark.parametrize("count", [1, 2, 4, 6])
def test_random_solution_keeps_intermediates_positive_integers(count: int) -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        numbers = [int(x) for x in rng.integers(1, 30, 6)]
        value, text = random_solution(rng, numbers, count)
        assert value.denominator == 1 and value >= 1
        parsed = parse_expression(text)
        assert parsed.value == value and len(parsed.numbers) == count


def test_same_seed_same_task_and_seeds_differ() -> None:
    a, b = make(), make()
    tasks = set()
    for seed in range(30):
        obs_a, info_a = a.reset(seed=seed)
        obs_b, info_b = b.reset(seed=seed)
        assert (obs_a, info_a, a.task.answer) == (obs_b, info_b, b.task.answer)
        tasks.add(info_a["task_id"])
    assert len(tasks) == 30


def test_reset_reseeds_and_continues_without_seed() -> None:
    env = make()
    first, _ = env.reset(seed=11)
    second, _ = env.reset()
    again, _ = env.reset(seed=11)
    assert first == again and first != second


# ------------------------------------------------------------------ answers and feedback
@pytest.mark.parametrize(
    ("reply", "error", "feedback"),
    [
        ("<answer>(50 - 25) * 3</answer>", None, None),
        ("Thinking... <answer>25 + 50</answer>", None, None),  # not all numbers: fine
        ("\\boxed{(50 - 25) \\times 3}", None, None),
        ("(50 - 25) * 3 = 75", None, None),
        ("Final answer: `(50-25)*3`.", None, None),
        ("<answer>\\((50 - 25) \\cdot 3\\)</answer>", None, None),
        ("", "no_answer", "could not find an expression in your reply"),
        ("I do not know", "syntax", "could not find <answer></answer> in your reply, and"),
        ("<answer>50 ** 3</answer>", "syntax", "could not be read: the power operator"),
        (
            "<answer>__import__('os').system('touch /tmp/pwned')</answer>",
            "syntax",
            "names such as '__import__' are not allowed",
        ),
        ("<answer>50 + 25 + 100</answer>", "numbers", "uses 100, which is not one of the given"),
        ("<answer>50 + 25 - 25 + 25</answer>", "numbers", "uses 25 3 times, but it is given once"),
        ("<answer>50 + 7 * 3</answer>", "wrong_value", "evaluates to 71, not 75"),
        ("<answer>50 / 3</answer>", "wrong_value", "evaluates to 50/3 (a fraction), not 75"),
        ("<answer>50 / (7 - 7)</answer>", "numbers", "uses 7 2 times"),
    ],
)
def test_answers_are_judged_and_explained(reply: str, error: str | None, feedback: str) -> None:
    env = make(max_turns=2)
    env.reset(seed=0, options=FIXED)
    obs, reward, terminated, truncated, info = env.step(reply)
    assert info["error"] == error
    assert info["correct"] is (error is None)
    if error is None:
        assert (reward, terminated, truncated) == (1.0, True, False)
        assert obs[-1]["role"] == "assistant"
    else:
        assert (reward, terminated, truncated) == (0.0, False, False)
        assert obs[-1]["role"] == "user"
        assert feedback in obs[-1]["content"]
        assert obs[-1]["content"].endswith("Try again: make 75 from 3, 7, 25, 50.")


def test_division_by_zero_in_the_env() -> None:
    env = make()
    env.reset(options={"numbers": [3, 3, 5, 7], "target": 12})
    obs, reward, terminated, _, info = env.step("<answer>5 / (3 - 3) + 7</answer>")
    assert (reward, terminated, info["error"]) == (0.0, False, "division_by_zero")
    assert "division by zero (dividing by (3 - 3), which is 0)" in obs[-1]["content"]
    _, reward, terminated, _, _ = env.step("<answer>5 + 7</answer>")
    assert (terminated, reward) == (True, pytest.approx(2 / 3))


@pytest.mark.parametrize(
    ("numbers", "target", "reply", "correct"),
    [
        ([7, 2, 4], 14, "7 / 2 * 4", True),  # a fraction in between is fine: exact arithmetic
        ([1, 3, 3], 1, "1 / 3 * 3", True),
        ([5, 5, 2], 10, "5 + 5", True),  # a number given twice may be used twice
        ([5, 5, 2], 10, "5 * 2", True),
        ([5, 2], 10, "5 + 5", False),
    ],
)
def test_exact_arithmetic_and_repeated_numbers(
    numbers: list[int], target: int, reply: str, correct: bool
) -> None:
    env = make()
    env.reset(options={"numbers": numbers, "target": target})
    _, _, terminated, _, info = env.step(f"<answer>{reply}</answer>")
    assert info["correct"] is correct and terminated is correct


@pytest.mark.parametrize(
    ("reply", "error", "feedback"),
    [
        ("<answer>2 * 3 + 4</answer>", None, ""),
        ("<answer>4 * 3 - 2</answer>", None, ""),
        ("<answer>2 * 3</answer>", "numbers", "does not use every number exactly once (not used"),
    ],
)
def test_use_all_requires_every_number(reply: str, error: str | None, feedback: str) -> None:
    env = make(use_all=True, num_numbers=3)
    obs, _ = env.reset(options={"numbers": [2, 3, 4], "target": 10})
    assert "use every number exactly once" in obs[-1]["content"]
    obs, _, _, _, info = env.step(reply)
    assert info["error"] == error
    assert feedback in obs[-1]["content"]


# ------------------------------------------------------------------ retries and truncation
@pytest.mark.parametrize("correct_turn", [1, 2, 3])
def test_retries_until_correct_and_reward_favours_early(correct_turn: int) -> None:
    env = make(max_turns=3)
    env.reset(seed=4)
    rewards = []
    for _ in range(correct_turn - 1):
        _, reward, terminated, truncated, _ = env.step("<answer>1 / 1000</answer>")
        rewards.append(reward)
        assert not (terminated or truncated)
    _, reward, terminated, truncated, _ = env.step(f"<answer>{env.task.answer}</answer>")
    assert rewards == [0.0] * (correct_turn - 1)
    assert (terminated, truncated) == (True, False)
    assert reward == pytest.approx(1 - (correct_turn - 1) / 3)


@pytest.mark.parametrize("max_turns", [1, 2, 4])
def test_truncated_after_max_turns_of_wrong_answers(max_turns: int) -> None:
    env = make(max_turns=max_turns)
    env.reset(seed=2)
    for turn in range(1, max_turns + 1):
        _, reward, terminated, truncated, info = env.step("<answer>0</answer>")
        last = turn == max_turns
        # A single-turn env terminates after its answer; a multi-turn one is truncated.
        expected = (0.0, last and max_turns == 1, last and max_turns > 1)
        assert (reward, terminated, truncated) == expected
        assert info["turn"] == turn
    with pytest.raises(EpisodeOverError):
        env.step("<answer>1</answer>")


def test_async_twins_and_rollout_with_the_reference_answer() -> None:
    async def episode() -> float:
        env = make()
        await env.areset(seed=9)
        _, reward, *_ = await env.astep(f"<answer>{env.task.answer}</answer>")
        return float(reward)

    assert asyncio.run(episode()) == 1.0

    # A policy that knows each seed's reference answer, looked up by the prompt it is shown.
    probe = make()
    answers = {}
    for seed in range(6):
        obs, _ = probe.reset(seed=seed)
        answers[obs[-1]["content"]] = f"<answer>{probe.task.answer}</answer>"

    def solve(messages: list[dict[str, Any]], tools: Any) -> str:
        return answers.get(messages[-1]["content"], "no idea")

    groups = collect("Countdown-v0", CallablePolicy(solve), seeds=range(6), group_size=2)
    rewards = [t.reward for g in groups for t in g.trajectories]
    assert rewards == [1.0] * 12
    assert {t.outcome for g in groups for t in g.trajectories} == {"ok"}


# ------------------------------------------------------------------ bad kwargs and options
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_numbers": 1}, ValueError, "num_numbers must be >= 2"),
        ({"num_numbers": 2.5}, TypeError, "num_numbers must be an int"),
        ({"min_number": 0}, ValueError, "min_number must be >= 1"),
        ({"min_number": 9, "max_number": 3}, ValueError, r"min_number \(9\) must be <="),
        ({"min_target": 0}, ValueError, "min_target must be >= 1"),
        ({"min_target": 50, "max_target": 40}, ValueError, r"min_target \(50\) must be <="),
        ({"max_target": "100"}, TypeError, "max_target must be an int"),
        ({"use_all": "yes"}, TypeError, "use_all must be a bool"),
        ({"num_numbers": 2, "max_number": 3, "min_target": 100}, ValueError, "cannot be reached"),
        ({"max_turns": 0}, ValueError, "max_turns"),
    ],
)
def test_bad_kwargs_raise_clear_errors(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        CountdownEnv(**kwargs)


def test_a_target_range_no_expression_reaches_fails_clearly() -> None:
    # 1 and 1 make at most 2, but the cheap bound (2**2 = 4) lets 3 through to generation.
    env = make(num_numbers=2, min_number=1, max_number=1, min_target=3, max_target=3)
    with pytest.raises(ValueError, match="could not generate a Countdown task"):
        env.reset(seed=0)


@pytest.mark.parametrize(
    "options",
    [
        {"numbers": [1, 2]},
        {"target": 3},
        {"numbers": [1, 2], "target": 3, "extra": 1},
        {"numbers": "12", "target": 3},
        {"numbers": [], "target": 3},
    ],
)
def test_bad_options_raise(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="options"):
        make().reset(options=options)


def test_options_pose_a_given_task() -> None:
    env = make()
    obs, info = env.reset(seed=0, options=FIXED)
    assert (info["numbers"], info["target"], env.task.answer) == ([3, 7, 25, 50], 75, None)
    assert obs[-1]["content"].startswith("Using the numbers 3, 7, 25, 50, make 75.")
