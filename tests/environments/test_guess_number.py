"""``envkit/GuessNumber-v0``: higher/lower feedback, shaped rewards, determinism, errors."""

from __future__ import annotations

import doctest
import warnings
from typing import Any

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import envkit
from envkit import EpisodeOverError
from envkit.environments import guess_number
from envkit.environments.guess_number import GuessNumberEnv
from envkit.policies import CallablePolicy
from envkit.rollout import collect

CONFIGS: list[dict[str, Any]] = [
    {},
    {"low": 0, "high": 1},
    {"low": -50, "high": 50, "max_turns": 10, "guess_penalty": 0.05},
    {"low": 5, "high": 5, "max_turns": 2},
    {"low": 1, "high": 10**6},
]


def make(**kwargs: Any) -> GuessNumberEnv:
    env = envkit.make("GuessNumber-v0", **kwargs).unwrapped
    assert isinstance(env, GuessNumberEnv)
    return env


def binary_search_guess(messages: list[dict[str, Any]], low: int, high: int) -> int:
    """The next binary-search guess, from the feedback in the conversation so far."""
    last_guess = None
    for m in messages:
        if m["role"] == "assistant":
            last_guess = int(m["content"])
        elif m["role"] == "user" and last_guess is not None:
            if m["content"].startswith("Higher"):
                low = last_guess + 1
            elif m["content"].startswith("Lower"):
                high = last_guess - 1
    return (low + high) // 2


# ------------------------------------------------------------------ gymnasium contract
@pytest.mark.parametrize("kwargs", CONFIGS)
def test_check_env_and_make_without_warnings(kwargs: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(make(**kwargs))
        env = gym.make("envkit/GuessNumber-v0", **kwargs)
        obs, _ = env.reset(seed=3)
        assert env.observation_space.contains(obs)
        _, reward, *_ = env.step("7")
        assert 0.0 <= reward <= 1.0
        env.close()


def test_docstring_examples() -> None:
    result = doctest.testmod(guess_number)
    assert result.attempted > 0
    assert result.failed == 0


# ------------------------------------------------------------------ playing
@pytest.mark.parametrize("kwargs", CONFIGS)
def test_binary_search_always_wins_within_the_default_turns(kwargs: dict[str, Any]) -> None:
    kwargs = {k: v for k, v in kwargs.items() if k != "max_turns"}  # the default: worst case
    env = make(**kwargs)
    low, high = env.low, env.high
    for seed in range(60):
        obs, info = env.reset(seed=seed)
        assert (info["low"], info["high"]) == (low, high)
        assert low <= env.task.answer <= high
        terminated = truncated = False
        while not (terminated or truncated):
            guess = binary_search_guess(obs, low, high)
            obs, reward, terminated, truncated, info = env.step(str(guess))
            assert info["consistent"] is True
        assert terminated and info["feedback"] == "correct"
        assert reward == pytest.approx(max(0.0, 1 - env.guess_penalty * (env.turn - 1)))
        assert reward > 0


def test_feedback_for_each_kind_of_reply() -> None:
    env = make(low=1, high=100, max_turns=7)
    env.reset(options={"secret": 37})
    replies = [
        ("50", "lower", "Lower: my number is less than 50. 6 guesses left."),
        ("I'd say 25", "higher", "Higher: my number is greater than 25. 5 guesses left."),
        (
            "hmm",
            "no_number",
            "I could not find a number in your reply. Reply with just your "
            "guess, a whole number from 1 to 100. 4 guesses left.",
        ),
        ("1000", "out_of_range", "1000 is outside the range 1 to 100. 3 guesses left."),
        ("40", "lower", "Lower: my number is less than 40. 2 guesses left."),
        ("30", "higher", "Higher: my number is greater than 30. 1 guess left."),
    ]
    for reply, feedback, text in replies:
        obs, reward, terminated, truncated, info = env.step(reply)
        assert (reward, terminated, truncated) == (0.0, False, False)
        assert info["feedback"] == feedback
        assert obs[-1] == {"role": "user", "content": text}
    obs, reward, terminated, truncated, info = env.step("37")
    assert (terminated, truncated, info["feedback"], info["guess"]) == (True, False, "correct", 37)
    assert reward == pytest.approx(1 - 6 / 7)
    assert obs[-1] == {"role": "assistant", "content": "37"}


@pytest.mark.parametrize(
    ("guesses", "consistent"),
    [
        (["50", "60"], [True, False]),  # 60 after "lower than 50" ignores the feedback
        (["50", "49"], [True, True]),
        (["50", "50"], [True, False]),  # repeating a wrong guess
        (["20", "10"], [True, False]),
        (["x", "37"], [False, True]),
    ],
)
def test_consistency_of_guesses_with_the_feedback(
    guesses: list[str], consistent: list[bool]
) -> None:
    env = make(max_turns=5)
    env.reset(options={"secret": 37})
    seen = [env.step(g)[4]["consistent"] for g in guesses]
    assert seen == consistent


@pytest.mark.parametrize(
    ("max_turns", "guess_penalty", "correct_turn", "expected"),
    [
        (7, None, 1, 1.0),
        (7, None, 2, 6 / 7),
        (7, None, 7, 1 / 7),
        (4, 0.5, 2, 0.5),
        (4, 0.5, 4, 0.0),  # never below 0
        (10, 0.0, 10, 1.0),  # no shaping: any win is 1
    ],
)
def test_reward_favours_fewer_guesses(
    max_turns: int, guess_penalty: float | None, correct_turn: int, expected: float
) -> None:
    env = make(max_turns=max_turns, guess_penalty=guess_penalty)
    env.reset(options={"secret": 42})
    for _ in range(correct_turn - 1):
        _, reward, terminated, _, _ = env.step("1")
        assert (reward, terminated) == (0.0, False)
    _, reward, terminated, _, _ = env.step("42")
    assert terminated and reward == pytest.approx(expected)


@pytest.mark.parametrize("max_turns", [1, 3])
def test_truncated_after_max_turns(max_turns: int) -> None:
    env = make(max_turns=max_turns)
    env.reset(seed=0)
    wrong = str(env.low if env.task.answer != env.low else env.high)
    for turn in range(1, max_turns + 1):
        _, reward, terminated, truncated, _ = env.step(wrong)
        last = turn == max_turns
        # A single-turn env terminates after its answer; a multi-turn one is truncated.
        expected = (0.0, last and max_turns == 1, last and max_turns > 1)
        assert (reward, terminated, truncated) == expected
    with pytest.raises(EpisodeOverError):
        env.step(wrong)


def test_reset_restores_the_possible_range() -> None:
    env = make(max_turns=5)
    env.reset(options={"secret": 37})
    env.step("50")  # now only 1..49 are possible
    env.reset(options={"secret": 80})
    assert env.step("70")[4]["consistent"] is True


# ------------------------------------------------------------------ determinism
def test_same_seed_same_secret_and_secrets_cover_the_range() -> None:
    a, b = make(low=1, high=5), make(low=1, high=5)
    secrets = []
    for seed in range(100):
        assert a.reset(seed=seed) == b.reset(seed=seed)
        assert a.task.answer == b.task.answer
        secrets.append(a.task.answer)
    assert set(secrets) == {1, 2, 3, 4, 5}


def test_default_max_turns_is_binary_search_worst_case() -> None:
    assert [make(low=1, high=h).max_turns for h in (1, 2, 3, 100, 1024)] == [1, 2, 2, 7, 11]
    assert "You have 7 guesses." in make().reset(seed=0)[0][-1]["content"]
    assert "You have 1 guess." in make(high=1).reset(seed=0)[0][-1]["content"]


def test_rollout_with_a_binary_search_policy() -> None:
    policy = CallablePolicy(lambda messages, tools: str(binary_search_guess(messages, 1, 100)))
    groups = collect("GuessNumber-v0", policy, seeds=range(8), group_size=2)
    trajectories = [t for g in groups for t in g.trajectories]
    assert {t.outcome for t in trajectories} == {"ok"}
    assert all(t.reward is not None and t.reward > 0 for t in trajectories)
    for g in groups:  # the same seed plays the same game
        assert g.trajectories[0].reward == g.trajectories[1].reward


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"low": 10, "high": 1}, ValueError, r"low \(10\) must be <= high \(1\)"),
        ({"low": 1.5}, TypeError, "low must be an int"),
        ({"high": "100"}, TypeError, "high must be an int"),
        ({"guess_penalty": 1.5}, ValueError, r"guess_penalty must be in \[0, 1\]"),
        ({"guess_penalty": -0.1}, ValueError, r"guess_penalty must be in \[0, 1\]"),
        ({"guess_penalty": "big"}, TypeError, "guess_penalty must be a float"),
        ({"max_turns": 0}, ValueError, "max_turns"),
    ],
)
def test_bad_kwargs_raise_clear_errors(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        GuessNumberEnv(**kwargs)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"secret": 1000}, ValueError),
        ({"secret": "5"}, TypeError),
        ({"answer": 5}, ValueError),
        ({"secret": 5, "extra": 1}, ValueError),
    ],
)
def test_bad_options_raise(options: dict[str, Any], error: type) -> None:
    with pytest.raises(error, match=r"options|secret"):
        make().reset(options=options)
