"""``envkit/Arithmetic-v0`` (its answer reading, ``envkit.parsing``, is tested in tests/core)."""

from __future__ import annotations

import doctest
import types
import warnings
from typing import Any

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import envkit
from envkit import EpisodeOverError
from envkit.environments import _checks, arithmetic
from envkit.environments._expression import parse_expression
from envkit.environments.arithmetic import ArithmeticEnv

CONFIGS: list[dict[str, Any]] = [
    {},
    {"operators": "+", "max_operand": 9, "max_turns": 2},
    {"operators": "*-", "min_operand": -20, "max_operand": 20, "num_operands": 4},
    {"operators": "+ *", "min_operand": 100, "max_operand": 999, "num_operands": 3},
]


def make(**kwargs: Any) -> ArithmeticEnv:
    env = envkit.make("Arithmetic-v0", **kwargs).unwrapped
    assert isinstance(env, ArithmeticEnv)
    return env


# ------------------------------------------------------------------ gymnasium contract
@pytest.mark.parametrize("kwargs", CONFIGS)
def test_check_env_and_make_without_warnings(kwargs: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(make(**kwargs))
        env = gym.make("envkit/Arithmetic-v0", **kwargs)
        env.reset(seed=1)
        _, reward, *_ = env.step("42")
        assert reward in (0.0, 1.0)
        env.close()


@pytest.mark.parametrize("module", [arithmetic, _checks], ids=lambda m: m.__name__)
def test_docstring_examples(module: types.ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


# ------------------------------------------------------------------ tasks
@pytest.mark.parametrize("kwargs", CONFIGS)
def test_answer_matches_an_independent_evaluation(kwargs: dict[str, Any]) -> None:
    env = make(**kwargs)
    for seed in range(100):
        _, info = env.reset(seed=seed)
        expression = info["expression"]
        # The Countdown parser has no unary minus: wrap negative operands in (0 - x).
        safe = " ".join(
            f"(0 - {t[1:]})" if t[:1] == "-" and t[1:].isdigit() else t for t in expression.split()
        )
        assert parse_expression(safe).value == env.task.answer, expression
        _, reward, terminated, _, info = env.step(str(env.task.answer))
        assert (reward, terminated, info["correct"]) == (1.0, True, True)


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_tasks_respect_the_kwargs(kwargs: dict[str, Any]) -> None:
    env = make(**kwargs)
    allowed = set((kwargs.get("operators") or "+-*").replace(" ", ""))
    lo, hi = kwargs.get("min_operand", 0), kwargs.get("max_operand", 9)
    n = kwargs.get("num_operands", 2)
    seen_ops: set[str] = set()
    for seed in range(100):
        _, info = env.reset(seed=seed)
        tokens = info["expression"].split()
        operands, ops = [int(t) for t in tokens[::2]], tokens[1::2]
        assert len(operands) == n
        assert all(lo <= x <= hi for x in operands)
        seen_ops.update(ops)
    assert seen_ops == allowed


def test_same_seed_same_task_and_seeds_differ() -> None:
    a, b = make(), make()
    prompts = set()
    for seed in range(30):
        obs_a, info_a = a.reset(seed=seed)
        obs_b, info_b = b.reset(seed=seed)
        assert (obs_a, info_a) == (obs_b, info_b)
        prompts.add(obs_a[-1]["content"])
    assert len(prompts) > 20


# ------------------------------------------------------------------ feedback, retries, rewards
@pytest.mark.parametrize("correct_turn", [1, 2, 3])
def test_retry_rewards_favour_early_answers(correct_turn: int) -> None:
    env = make(max_turns=3)
    env.reset(seed=5)
    answer = env.task.answer
    for _ in range(correct_turn - 1):
        obs, reward, terminated, truncated, info = env.step(str(answer + 1))
        assert (reward, terminated, truncated, info["correct"]) == (0.0, False, False, False)
        assert obs[-1] == {"role": "user", "content": f"{answer + 1} is not correct. Try again."}
    _, reward, terminated, truncated, _ = env.step(f"The answer is {answer}.")
    assert (terminated, truncated) == (True, False)
    assert reward == pytest.approx(1 - (correct_turn - 1) / 3)


def test_unparseable_answer_is_reported_and_truncation_at_max_turns() -> None:
    env = make(max_turns=2)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("no idea")
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info == {"turn": 1, "correct": False, "parsed": False}
    assert "could not find a number" in obs[-1]["content"]
    _, reward, terminated, truncated, _ = env.step("still no idea")
    assert (reward, terminated, truncated) == (0.0, False, True)
    with pytest.raises(EpisodeOverError, match="reset"):
        env.step("1")


# ------------------------------------------------------------------ kwargs errors
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"operators": "/"}, ValueError, "unknown"),
        ({"operators": ""}, ValueError, "non-empty"),
        ({"operators": ["+"]}, TypeError, "operators must be a str"),
        ({"min_operand": 5, "max_operand": 1}, ValueError, r"min_operand \(5\) must be <="),
        ({"num_operands": 1}, ValueError, "num_operands must be >= 2"),
        ({"max_operand": 9.5}, TypeError, "max_operand must be an int"),
        ({"max_turns": 0}, ValueError, "max_turns"),
    ],
)
def test_bad_kwargs_raise_clear_errors(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ArithmeticEnv(**kwargs)
