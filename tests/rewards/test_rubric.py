"""Rubric: weighted totals, breakdowns, concurrency, error recording; score_groups on rollouts."""

from __future__ import annotations

import asyncio
import functools

import pytest
from rewards_support import group

import envkit
from envkit.policies import CallablePolicy
from envkit.rewards import Reward, Rubric, as_scorer, ascore_groups, get, score_groups


def ends_with_391(trajectory) -> float:
    return float((trajectory.messages[-1].content or "").rstrip(".").endswith("391"))


def short(trajectory, limit: int = 12) -> float:
    return float(len(trajectory.messages[-1].content or "") <= limit)


def test_weighted_total_and_breakdown() -> None:
    rubric = Rubric([(ends_with_391, 2.0), (short, -0.5)])
    g = group("391", "It is 391.", "I think 400")
    assert rubric.score_group_sync(g) == [1.5, 1.5, -0.5]
    assert g[0].reward_breakdown == {"ends_with_391": 1.0, "short": 1.0}
    assert g[2].reward_breakdown == {"ends_with_391": 0.0, "short": 1.0}
    assert rubric.weights == {"ends_with_391": 2.0, "short": -0.5}


def test_component_error_makes_the_total_unknown_and_is_counted() -> None:
    def fails_on_400(trajectory) -> float:
        if "400" in trajectory.messages[-1].content:
            raise ValueError("no 400s")
        return 1.0

    g = group("391", "400")
    report = score_groups(g, Rubric([(ends_with_391, 1.0), (fails_on_400, 1.0)]))
    assert g.rewards == [2.0, None]
    assert g[1].reward_breakdown == {"ends_with_391": 0.0, "fails_on_400": None}
    assert g[1].metrics["reward_errors"] == {
        "fails_on_400": "ValueError in reward 'fails_on_400': no 400s"
    }
    assert report.errors == 1 and report.scored == 1


def test_on_missing_skip_sums_known_components() -> None:
    g = group("391", "400")
    rubric = Rubric([(ends_with_391, 1.0), (lambda t: None, 1.0)], on_missing="skip")
    assert rubric.score_group_sync(g) == [1.0, 0.0]
    all_missing = Rubric([(Reward(lambda t: None, name="nothing"), 1.0)], on_missing="skip")
    assert all_missing.score_group_sync(group("x")) == [None]


async def test_components_are_evaluated_concurrently() -> None:
    a_started, b_started = asyncio.Event(), asyncio.Event()

    async def a(trajectory) -> float:
        a_started.set()
        await asyncio.wait_for(b_started.wait(), 2)  # only finishes if b runs meanwhile
        return 1.0

    async def b(trajectory) -> float:
        b_started.set()
        await asyncio.wait_for(a_started.wait(), 2)
        return 1.0

    g = group("x")
    report = await ascore_groups(g, Rubric([(a, 1.0), (b, 1.0)]))
    assert g.rewards == [2.0] and report.errors == 0


def test_options_bind_per_component_and_with_name_renames() -> None:
    g = group("391 is the answer", "It is 391")
    rubric = Rubric(
        [
            (get("regex_match").with_name("starts"), 1.0),
            (get("regex_match").with_name("ends"), 1.0),
        ],
        options={"starts": {"pattern": r"^391"}, "ends": {"pattern": r"391$"}},
    )
    assert rubric.score_group_sync(g) == [1.0, 1.0]
    assert g[0].reward_breakdown == {"starts": 1.0, "ends": 0.0}


def test_nested_rubric_breakdown() -> None:
    inner = Rubric([(ends_with_391, 1.0), (short, 1.0)], name="quality")
    outer = Rubric([(inner, 0.5), (lambda t: 1.0, 1.0)])
    g = group("391")
    assert outer.score_group_sync(g) == [2.0]
    assert g[0].reward_breakdown == {
        "quality": 2.0,
        "quality/ends_with_391": 1.0,
        "quality/short": 1.0,
        "lambda": 1.0,
    }


@pytest.mark.parametrize(
    ("components", "kwargs", "error"),
    [
        ([], {}, "non-empty list"),
        ("exact_match", {}, "non-empty list"),
        ([("exact_match",)], {}, "pair"),
        ([("exact_match", "1")], {}, "must be a number"),
        ([("exact_match", float("nan"))], {}, "must be finite"),
        ([("exact_match", 1.0), ("exact_match", 2.0)], {}, "duplicate component names"),
        ([("exact_match", 1.0)], {"options": {"regex_match": {}}}, "not components"),
        ([("exact_match", 1.0)], {"on_missing": "zero"}, "on_missing"),
    ],
)
def test_invalid_rubrics(components, kwargs: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Rubric(components, **kwargs)


def test_unknown_component_name() -> None:
    with pytest.raises(KeyError, match="no reward named 'nope'"):
        Rubric([("nope", 1.0)])


def test_as_scorer_accepts_names_functions_partials() -> None:
    assert as_scorer("exact_match") is get("exact_match")
    from envkit.rewards.verifiable import numeric_match

    assert as_scorer(numeric_match) is get("numeric_match")  # the decorated function
    bound = as_scorer(functools.partial(numeric_match, answer=391))
    assert bound.name == "numeric_match" and bound.options == {"answer": 391}
    assert as_scorer(short).name == "short"
    with pytest.raises(TypeError, match="cannot score with 3"):
        as_scorer(3)


def test_score_groups_on_real_rollouts() -> None:
    policy = CallablePolicy(lambda messages, tools: "The answer is 14")
    groups = envkit.collect(
        "Arithmetic-v0",
        policy,
        seeds=[0, 1],
        group_size=3,
        env_kwargs={"max_turns": 1, "operators": "+"},
        progress=False,
    )
    report = score_groups(
        groups,
        Rubric(
            [("regex_match", 1.0), ("length_penalty", 1.0)],
            options={"regex_match": {"pattern": r"answer is \d+"}, "length_penalty": {"limit": 8}},
        ),
    )
    assert report.groups == 2 and report.trajectories == 6 and report.scored == 6
    for g in groups:
        for t in g:
            assert t.reward_breakdown["regex_match"] == 1.0
            assert t.reward == pytest.approx(1.0 - (16 - 8) / 8)


def test_score_groups_rejects_non_groups_and_binds_options() -> None:
    with pytest.raises(TypeError, match="takes TrajectoryGroups"):
        score_groups(["not a group"], "exact_match")  # type: ignore[list-item]
    g = group("391")
    score_groups(g, "numeric_match", options={"answer": 391})
    assert g.rewards == [1.0]
