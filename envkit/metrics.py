"""Summary statistics of rollouts (mean reward, pass@k, outcome counts, timing) and how
per-process metrics are merged.

A module that produces metrics declares each one's reduction next to it, as a mapping from
metric name (``*`` matches any text, ``/`` included) to ``"mean"``, ``"max"``, ``"min"`` or
``"sum"``; ``merge_metrics`` combines the values of several processes by it. A metric nobody
declared is averaged (``DEFAULT_REDUCTION``).

Example:
    >>> from envkit.metrics import merge_metrics, pass_at_k
    >>> pass_at_k(n=4, c=1, k=1)
    0.25
    >>> round(pass_at_k(n=4, c=1, k=2), 3)
    0.5
    >>> merge_metrics([{"lag/max": 1.0, "n": 2.0}, {"lag/max": 3.0, "n": 5.0}],
    ...               {"lag/max": "max", "n": "sum"})
    {'lag/max': 3.0, 'n': 7.0}
"""

from __future__ import annotations

import fnmatch
import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Literal, get_args

from pydantic import BaseModel, Field

from envkit.types import TrajectoryGroup

__all__ = [
    "DEFAULT_REDUCTION",
    "Reduction",
    "RolloutSummary",
    "merge_metrics",
    "pass_at_k",
    "reduction_of",
    "summarize",
]

Reduction = Literal["mean", "max", "min", "sum"]
"""How the values of one metric from several processes become one value."""

DEFAULT_REDUCTION: Reduction = "mean"
"""The reduction of a metric that no declaration names."""

_REDUCTIONS: tuple[str, ...] = get_args(Reduction)


def reduction_of(name: str, reductions: Mapping[str, Reduction]) -> Reduction:
    """The declared reduction of metric ``name``.

    An exact key wins; else the matching ``*`` pattern with the most literal characters; else
    ``DEFAULT_REDUCTION``.

    Example:
        >>> decl = {"env/*/episodes": "sum", "reward/*": "mean", "reward/best": "max"}
        >>> reduction_of("env/a/b/episodes", decl), reduction_of("reward/best", decl)
        ('sum', 'max')
        >>> reduction_of("something/new", decl)
        'mean'
    """
    if name in reductions:
        return reductions[name]
    matches = [
        (len(pattern.replace("*", "")), how)
        for pattern, how in reductions.items()
        if "*" in pattern and fnmatch.fnmatchcase(name, pattern)
    ]
    return max(matches, key=lambda m: m[0])[1] if matches else DEFAULT_REDUCTION


def merge_metrics(
    parts: Sequence[Mapping[str, float]], reductions: Mapping[str, Reduction]
) -> dict[str, float]:
    """Merges the metrics of several processes, each by its declared reduction.

    Non-finite values (NaN: nothing to measure on that process) are left out; a metric with no
    finite value on any process is NaN.

    Args:
        parts: One ``{name: value}`` dict per process.
        reductions: Declared reductions (see ``reduction_of``).

    Raises:
        ValueError: a declaration names a reduction other than mean, max, min or sum.
    """
    bad = {k: v for k, v in reductions.items() if v not in _REDUCTIONS}
    if bad:
        raise ValueError(
            f"unknown metric reductions {bad}; declare each metric as one of "
            f"{', '.join(_REDUCTIONS)}"
        )
    values: dict[str, list[float]] = {}
    for part in parts:
        for key, value in part.items():
            values.setdefault(key, [])
            if isinstance(value, int | float) and math.isfinite(value):
                values[key].append(float(value))
    out: dict[str, float] = {}
    for key, finite in values.items():
        how = reduction_of(key, reductions)
        if not finite:
            out[key] = math.nan
        elif how == "sum":
            out[key] = float(sum(finite))
        elif how == "max":
            out[key] = max(finite)
        elif how == "min":
            out[key] = min(finite)
        else:
            out[key] = sum(finite) / len(finite)
    return out


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
