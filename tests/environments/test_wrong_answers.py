"""A wrong answer never scores as right: by the env, nor by any bundled reward that judges answers.

For every bundled env, scripted wrong replies are rolled out with ``envkit.collect`` and scored
by the env and by each bundled correctness reward. A reward that applies (the task has a
reference it can compare) must give exactly 0.0; one that does not apply must give ``None`` with
the reason recorded, never a positive score. As a control, replying with the task's reference
scores 1.0 by the env and by the rewards that apply, so the 0s above are not a broken reward.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import envkit
from envkit.environments._expression import parse_expression
from envkit.policies import CallablePolicy
from envkit.registration import BUNDLED, LAZY_FAMILIES, full_id, registered_ids
from envkit.rewards import default_reward_for, get, list_rewards, score_groups
from envkit.sandbox.pool import SandboxPool
from envkit.types import Trajectory, TrajectoryGroup

Reply = Callable[[str], Any]
"""Builds one assistant turn from the task's prompt text."""

CORRECTNESS = {"exact_match", "numeric_match", "code_tests", "reasoning_gym"}
"""Bundled rewards that judge whether an answer is right (``reasoning_gym`` applies only to the
envkit/rg-* envs, tested in test_reasoning_gym.py)."""
FORMAT_ONLY = {"regex_match", "json_valid", "tool_calls_valid", "length_penalty"}
"""Bundled rewards that judge the form of a reply, not its correctness."""


def _arithmetic_value(prompt: str) -> int:
    expression = re.search(r"What is (.+?)\?", prompt)
    assert expression is not None, prompt
    value = parse_expression(expression[1]).value
    assert value is not None and value.denominator == 1
    return int(value)


def _countdown(prompt: str) -> tuple[list[int], int]:
    found = re.search(r"Using the numbers ([\d, ]+), make (\d+)\.", prompt)
    assert found is not None, prompt
    return [int(n) for n in found[1].split(",")], int(found[2])


def _countdown_target_alone(prompt: str) -> str:
    numbers, target = _countdown(prompt)
    assert target not in numbers  # else the target alone would be a right answer
    return f"<answer>{target}</answer>"


def _submit(answer: str) -> dict[str, Any]:
    call = {"id": "c0", "type": "function", "function": {"name": "submit", "arguments": ""}}
    call["function"]["arguments"] = json.dumps({"answer": answer})
    return {"role": "assistant", "content": None, "tool_calls": [call]}


# env id -> (env kwargs, reset options, wrong replies, rewards that apply, needs docker)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any] | None, list[Reply], set[str], bool]] = {
    "envkit/Arithmetic-v0": (
        {"max_turns": 1},
        None,
        [
            lambda p: f"<answer>{_arithmetic_value(p) + 1}</answer>",
            lambda p: f"First {_arithmetic_value(p)}? No: \\boxed{{{_arithmetic_value(p) - 1}}}",
            lambda p: "I don't know.",
        ],
        {"exact_match", "numeric_match"},
        False,
    ),
    "envkit/Countdown-v0": (
        {"max_turns": 1},
        None,
        [
            lambda p: "<answer>1 + 1</answer>",  # the reproduction
            _countdown_target_alone,
            lambda p: f"<answer>{' * '.join(map(str, _countdown(p)[0]))}</answer>",
        ],
        {"exact_match"},  # numeric_match does not apply: the reference is an expression
        False,
    ),
    "envkit/GuessNumber-v0": (
        {"max_turns": 1},
        {"secret": 37},
        [
            lambda p: "<answer>38</answer>",
            lambda p: "Is it 37? I'll say \\boxed{36}",
            lambda p: "5",
        ],
        {"exact_match", "numeric_match"},
        False,
    ),
    "envkit/PythonCoding-v0": (
        {"max_turns": 1},
        {"task_id": "roman_to_int"},
        [lambda p: "```python\ndef roman_to_int(s):\n    return -1\n```", lambda p: "No idea."],
        set(),  # no textual reference; code_tests needs tests the env keeps to itself
        True,
    ),
    "envkit/PythonTools-v0": (
        {"max_turns": 1},
        {"template": "csv_column_mean"},
        [lambda p: "definitely wrong 123456", lambda p: _submit("definitely wrong 654321")],
        {"exact_match", "numeric_match"},
        True,
    ),
}


def test_every_bundled_env_and_reward_is_covered() -> None:
    # Families registered on first use (envkit/rg-*: reasoning-gym) have their own tests; ids
    # other test modules register (tests/validation's hackable envs) are not bundled.
    bundled_envs = {full_id(i) for i in BUNDLED}
    assert bundled_envs <= set(registered_ids())
    assert not any(i.startswith(tuple(LAZY_FAMILIES)) for i in bundled_envs)
    assert bundled_envs == set(CASES)
    bundled = {n for n in list_rewards() if getattr(get(n), "fn", None) is not None}
    bundled = {n for n in bundled if get(n).fn.__module__.startswith("envkit.")}
    assert bundled == CORRECTNESS | FORMAT_ONLY, "classify the new bundled reward here"


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    with SandboxPool(size=1) as p:
        yield p


def _rollout(env_id: str, reply: Reply, pool: SandboxPool | None) -> list[Trajectory]:
    kwargs, options, _, _, docker = CASES[env_id]
    env_kwargs = {**kwargs, **({"pool": pool} if docker else {})}

    def policy(messages: list[dict[str, Any]], tools: Any) -> Any:
        prompt = next(m["content"] for m in messages if m["role"] == "user")
        return reply(prompt)

    seeds = [0] if docker else [0, 1, 2]
    groups = envkit.collect(
        env_id,
        CallablePolicy(policy),
        seeds=seeds,
        options=options,
        env_kwargs=env_kwargs,
        progress=False,
    )
    trajs = [t for g in groups for t in g]
    assert all(not t.failed for t in trajs), [t.error for t in trajs]
    return trajs


def _reward_values(env_id: str, trajs: list[Trajectory]) -> dict[str, list[tuple[Any, Any]]]:
    """Reward name -> (value, recorded error) per trajectory, for every correctness reward."""
    names = set(CORRECTNESS)
    default = default_reward_for(env_id)
    if default is not None:
        names.add(default)
    out = {}
    for name in sorted(names):
        copies = [t.model_copy(deep=True) for t in trajs]
        score_groups([TrajectoryGroup(env_id=env_id, trajectories=[t]) for t in copies], name)
        out[name] = [(t.reward, t.metrics.get("reward_errors", {}).get(name)) for t in copies]
    return out


def _check_wrong(env_id: str, case: int, pool: SandboxPool | None) -> None:
    _, _, replies, applies, _ = CASES[env_id]
    trajs = _rollout(env_id, replies[case], pool)
    for t in trajs:
        assert sum(t.step_rewards) == 0.0, (t.messages[-1], t.info)
    for name, values in _reward_values(env_id, trajs).items():
        for (value, error), t in zip(values, trajs, strict=True):
            said = t.messages[-1].content if t.messages else None
            if name in applies:
                assert value == 0.0, (name, said, t.reference, value, error)
            else:  # not applicable: unknown, with the reason recorded; never a positive score
                assert value is None and error, (name, said, t.reference, value)


def _check_reference_scores(env_id: str, pool: SandboxPool | None) -> None:
    """Control: replying with the reference is right, by the env and by the rewards that apply."""
    first = _rollout(env_id, CASES[env_id][2][0], pool)
    assert all(t.reference is not None for t in first)
    for seed, t in enumerate(first):
        reference = str(t.reference)
        right = _rollout(env_id, lambda p, r=reference: f"<answer>{r}</answer>", pool)
        trajs = [right[seed]]
        assert trajs[0].reference == t.reference
        assert sum(trajs[0].step_rewards) == 1.0, trajs[0].info
        for name, values in _reward_values(env_id, trajs).items():
            if name in CASES[env_id][3]:
                assert values == [(1.0, None)], (name, reference)


FAST = [e for e, c in CASES.items() if not c[4]]
SANDBOXED = [e for e, c in CASES.items() if c[4]]


@pytest.mark.parametrize(
    ("env_id", "case"), [(e, i) for e in FAST for i in range(len(CASES[e][2]))]
)
def test_a_wrong_answer_scores_zero(env_id: str, case: int) -> None:
    _check_wrong(env_id, case, None)


@pytest.mark.parametrize("env_id", [e for e in FAST if CASES[e][3]])
def test_the_reference_answer_scores_one(env_id: str) -> None:
    _check_reference_scores(env_id, None)


@pytest.mark.docker
@pytest.mark.parametrize(
    ("env_id", "case"), [(e, i) for e in SANDBOXED for i in range(len(CASES[e][2]))]
)
def test_a_wrong_answer_scores_zero_in_a_sandbox(env_id: str, case: int, pool: SandboxPool) -> None:
    _check_wrong(env_id, case, pool)


@pytest.mark.docker
def test_the_reference_answer_scores_one_in_a_sandbox(pool: SandboxPool) -> None:
    _check_reference_scores("envkit/PythonTools-v0", pool)
