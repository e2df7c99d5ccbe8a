"""pass@k and rollout summaries."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from envkit.metrics import pass_at_k, summarize
from envkit.types import Timings, Trajectory, TrajectoryGroup


def brute_force_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """Fraction of the k-subsets of n samples (c of them passing) that contain a pass."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return Fraction(sum(any(samples[i] for i in s) for s in subsets), len(subsets))


CASES = [(n, c, k) for n in range(1, 8) for c in range(n + 1) for k in range(1, n + 1)]


@pytest.mark.parametrize(("n", "c", "k"), CASES)
def test_pass_at_k_matches_brute_force(n: int, c: int, k: int) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(float(brute_force_pass_at_k(n, c, k)), abs=1e-12)


def test_pass_at_k_known_values() -> None:
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(100, 10, 1) == pytest.approx(0.1)
    assert pass_at_k(1000, 3, 100) == pytest.approx(1 - math.comb(997, 100) / math.comb(1000, 100))


@pytest.mark.parametrize(
    ("n", "c", "k", "needle"),
    [
        (4, 1, 0, "1 <= k <= n"),
        (4, 1, 5, "1 <= k <= n"),
        (4, 5, 2, "0 <= c <= n"),
        (4, -1, 2, "0 <= c <= n"),
    ],
)
def test_pass_at_k_rejects_bad_arguments(n: int, c: int, k: int, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        pass_at_k(n, c, k)


def _traj(
    reward: float | None, outcome: str = "ok", turns: int = 1, total_s: float = 1.0
) -> Trajectory:
    from envkit.types import Message

    msgs = [Message(role="assistant", content="x")] * turns
    return Trajectory(
        env_id="x", reward=reward, outcome=outcome, messages=msgs, timings=Timings(total_s=total_s)
    )  # type: ignore[arg-type]


def test_summarize() -> None:
    groups = [
        TrajectoryGroup(env_id="x", trajectories=[_traj(1.0), _traj(0.0), _traj(0.0), _traj(1.0)]),
        TrajectoryGroup(env_id="x", trajectories=[_traj(0.0, "truncated", 3)] * 4),
        TrajectoryGroup(
            env_id="x",
            trajectories=[
                _traj(1.0),
                _traj(None, "env_error"),
                _traj(None, "timeout"),
                _traj(0.5, total_s=5.0),
            ],
        ),
    ]
    s = summarize(groups, wall_s=2.5)
    assert s.episodes == 12 and s.groups == 3
    rewards = [1, 0, 0, 1, 0, 0, 0, 0, 1, 0.5]
    assert s.mean_reward == pytest.approx(sum(rewards) / len(rewards)), (
        "failed episodes are left out"
    )
    assert s.std_reward == pytest.approx(__import__("statistics").pstdev(rewards))
    assert list(s.pass_at) == [1, 2, 4]
    for k in (1, 2, 4):
        expected = (pass_at_k(4, 2, k) + pass_at_k(4, 0, k) + pass_at_k(4, 1, k)) / 3
        assert s.pass_at[k] == pytest.approx(expected)
    assert s.outcomes == {"ok": 6, "truncated": 4, "env_error": 1, "timeout": 1}
    assert s.zero_variance_groups == pytest.approx(0.5), "group 3 has unknown rewards: not counted"
    assert s.mean_turns == pytest.approx((8 * 1 + 4 * 3) / 12)
    assert s.mean_episode_s == pytest.approx((11 * 1.0 + 5.0) / 12)
    assert s.wall_s == 2.5


def test_summarize_pass_threshold() -> None:
    groups = [TrajectoryGroup(env_id="x", trajectories=[_traj(0.5), _traj(0.9)])]
    assert summarize(groups).pass_at[1] == 0.0
    assert summarize(groups, pass_threshold=0.5).pass_at[1] == 1.0
    assert summarize(groups, pass_threshold=0.9).pass_at == {1: 0.5, 2: 1.0}


@pytest.mark.parametrize(
    ("size", "ks"), [(1, [1]), (2, [1, 2]), (3, [1, 2, 3]), (8, [1, 2, 4, 8]), (6, [1, 2, 4, 6])]
)
def test_summarize_ks(size: int, ks: list[int]) -> None:
    groups = [TrajectoryGroup(env_id="x", trajectories=[_traj(1.0)] * size)]
    assert list(summarize(groups).pass_at) == ks


def test_summarize_edge_cases() -> None:
    empty = summarize([])
    assert (empty.episodes, empty.mean_reward, empty.pass_at, empty.outcomes) == (0, None, {}, {})
    all_failed = summarize(
        [TrajectoryGroup(env_id="x", trajectories=[_traj(None, "policy_error")] * 2)]
    )
    assert all_failed.mean_reward is None and all_failed.std_reward is None
    assert all_failed.pass_at == {1: 0.0, 2: 0.0}
    uneven = summarize(
        [
            TrajectoryGroup(env_id="x", trajectories=[_traj(1.0)]),
            TrajectoryGroup(env_id="x", trajectories=[_traj(1.0)] * 2),
        ]
    )
    assert uneven.pass_at == {}, "pass@k needs groups of one size"
    assert uneven.mean_reward == 1.0
