"""Summary statistics of rollouts: mean reward, pass@k, outcome counts, timing.

Example:
    >>> from envkit.metrics import pass_at_k
    >>> pass_at_k(n=4, c=1, k=1)
    0.25
    >>> round(pass_at_k(n=4, c=1, k=2), 3)
    0.5
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, Field

from envkit.types import TrajectoryGroup

__all__ = ["RolloutSummary", "pass_at_k", "summarize"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` passed (Chen et al., 2021).

    Raises:
        ValueError: ``k`` is not in ``1..n`` or ``c`` not in ``0..n``.
    """
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n, got k={k}, n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n, got c={c}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


class RolloutSummary(BaseModel):
    """What ``envkit eval`` prints."""

    episodes: int
    groups: int
    mean_reward: float | None = Field(description="Mean over episodes whose reward is known.")
    std_reward: float | None = None
    pass_at: dict[int, float] = Field(default_factory=dict)
    outcomes: dict[str, int] = Field(default_factory=dict)
    zero_variance_groups: float | None = None
    mean_turns: float = 0.0
    mean_episode_s: float = 0.0
    wall_s: float | None = None


def _ks(group_size: int) -> list[int]:
    ks, k = [], 1
    while k < group_size:
        ks.append(k)
        k *= 2
    ks.append(group_size)
    return ks


def summarize(
    groups: Sequence[TrajectoryGroup], *, pass_threshold: float = 1.0, wall_s: float | None = None
) -> RolloutSummary:
    """Summarizes groups: mean reward, pass@k for k = 1, 2, 4, ... group size, outcomes.

    An episode passes when its reward is at least ``pass_threshold``; episodes that failed
    (env/policy/infra error, timeout) count as not passing, and are left out of the mean reward.
    """
    trajs = [t for g in groups for t in g]
    rewards = [t.reward for t in trajs if t.reward is not None]
    sizes = {len(g) for g in groups}
    pass_at: dict[int, float] = {}
    if len(sizes) == 1 and groups:
        n = sizes.pop()
        for k in _ks(n) if n else []:
            values = [
                pass_at_k(n, sum(1 for t in g if (t.reward or 0.0) >= pass_threshold - 1e-9), k)
                for g in groups
            ]
            pass_at[k] = statistics.fmean(values)
    zero_var = [
        len({t.reward for t in g}) == 1
        for g in groups
        if len(g) > 1 and all(t.reward is not None for t in g)
    ]
    return RolloutSummary(
        episodes=len(trajs),
        groups=len(groups),
        mean_reward=statistics.fmean(rewards) if rewards else None,
        std_reward=statistics.pstdev(rewards) if rewards else None,
        pass_at=pass_at,
        outcomes=dict(Counter(t.outcome for t in trajs)),
        zero_variance_groups=statistics.fmean(zero_var) if zero_var else None,
        mean_turns=statistics.fmean(t.num_turns for t in trajs) if trajs else 0.0,
        mean_episode_s=statistics.fmean(t.timings.total_s for t in trajs) if trajs else 0.0,
        wall_s=wall_s,
    )
