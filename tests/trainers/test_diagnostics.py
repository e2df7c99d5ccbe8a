"""Per-step diagnostics: signal counts, diversity, collapse warning, judge hacking flags."""

from __future__ import annotations

import math

import pytest

from envkit.trainers.diagnostics import (
    collapse_warning,
    distinct_ngrams,
    group_signal,
    pairwise_similarity,
    step_diagnostics,
)
from envkit.types import Completion, Message, Trajectory, TrajectoryGroup


def _traj(reward: float | None, tokens: list[int], **kw: object) -> Trajectory:
    c = Completion(
        message=Message(role="assistant", content="x"),
        prompt_token_ids=[1],
        token_ids=tokens,
        logprobs=[-0.5] * len(tokens),
        finish_reason="stop",
    )
    return Trajectory(env_id="e", reward=reward, completions=[c], messages=[c.message], **kw)


@pytest.mark.parametrize(
    ("rewards", "outcome", "expected"),
    [
        ([1.0, 0.0], "ok", "ok"),
        ([1.0, 1.0, 1.0], "ok", "zero_variance"),
        ([None, 1.0], "ok", "too_few"),
        ([1.0, 0.0], "judge_error", "judge_error"),
    ],
)
def test_group_signal(rewards: list[float | None], outcome: str, expected: str) -> None:
    g = TrajectoryGroup(env_id="e", outcome=outcome, trajectories=[_traj(r, [1]) for r in rewards])
    assert group_signal(g) == expected


def test_distinct_and_similarity_separate_diverse_from_collapsed() -> None:
    diverse = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    collapsed = [[1, 2, 3, 4]] * 3
    assert distinct_ngrams(diverse) == 1.0
    assert distinct_ngrams(collapsed) == pytest.approx(1 / 3)
    assert pairwise_similarity(diverse) == 0.0
    assert pairwise_similarity(collapsed) == 1.0
    assert 0.0 < pairwise_similarity([[1, 2, 3], [1, 2, 4]]) < 1.0


def test_step_diagnostics_counts_and_breakdown() -> None:
    ok = TrajectoryGroup(
        env_id="e",
        trajectories=[
            _traj(1.0, [1, 2, 3], reward_breakdown={"exact": 1.0, "len": 0.0}),
            _traj(0.0, [4, 5, 6], reward_breakdown={"exact": 0.0, "len": -0.5}),
        ],
    )
    tied = TrajectoryGroup(env_id="e", trajectories=[_traj(1.0, [7, 8]), _traj(1.0, [7, 8])])
    judged = TrajectoryGroup(
        env_id="e",
        outcome="judge_error",
        trajectories=[_traj(None, [9]), _traj(None, [10], outcome="env_error", error="boom")],
    )
    m = step_diagnostics([ok, tied, judged], collapse_similarity=0.9)
    assert m["reward/mean"] == pytest.approx(0.75)
    assert m["reward/exact"] == pytest.approx(0.5)
    assert m["reward/len"] == pytest.approx(-0.25)
    assert m["groups/zero_variance_frac"] == pytest.approx(1 / 3)
    assert m["groups/judge_error"] == 1.0
    assert m["groups/with_signal_frac"] == pytest.approx(1 / 3)
    assert m["episodes/failed"] == 1.0
    assert m["entropy/sampled_nll"] == pytest.approx(0.5)
    assert m["diversity/collapsed_groups_frac"] == pytest.approx(1 / 3)  # only the tied group
    assert "judge/hacking_flagged_frac" not in m


def test_judge_hacking_flags_are_counted() -> None:
    g = TrajectoryGroup(
        env_id="e",
        trajectories=[
            _traj(0.0, [1, 2], metrics={"judge_reward_hacking": True}),
            _traj(1.0, [3, 4], metrics={"judge_reward_hacking": False}),
        ],
    )
    assert step_diagnostics([g])["judge/hacking_flagged_frac"] == 0.5


def test_collapse_warning() -> None:
    assert collapse_warning({"diversity/pairwise_similarity": 0.3}, 0.9) is None
    assert collapse_warning({"diversity/pairwise_similarity": math.nan}, 0.9) is None
    text = collapse_warning(
        {"diversity/pairwise_similarity": 0.95, "diversity/distinct_2": 0.1}, 0.9
    )
    assert text is not None and "95%" in text and "temperature" in text
