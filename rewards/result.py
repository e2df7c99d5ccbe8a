"""``GroupScores``: what a reward, rubric or judge computed for one group, before it is applied.

Scorers compute a ``GroupScores`` without touching the group (``evaluate``); ``apply`` then
writes it: each trajectory's ``reward`` and ``reward_breakdown``, the errors under
``metrics["reward_errors"]`` (a reward that could not be computed is ``None``, never 0), and,
when a group reward (the judge) failed, ``group.outcome = "judge_error"`` with the reason.

Example:
    >>> from envkit.types import Trajectory, TrajectoryGroup
    >>> g = TrajectoryGroup(env_id="e", trajectories=[Trajectory(env_id="e") for _ in range(2)])
    >>> s = GroupScores.empty(2)
    >>> s.totals = [1.0, None]
    >>> s.errors[1] = {"exact": "ValueError: no answer"}
    >>> s.apply(g)
    >>> g.rewards, g[1].metrics["reward_errors"]
    ([1.0, None], {'exact': 'ValueError: no answer'})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from envkit.types import TrajectoryGroup

__all__ = ["GroupScores", "describe_error"]

ERRORS_KEY = "reward_errors"


def describe_error(e: BaseException, where: str) -> str:
    """``"ValueError in reward 'x': message"``: one line that names the error and its source."""
    text = str(e) or repr(e)
    return f"{type(e).__name__} in {where}: {text}"


@dataclass
class GroupScores:
    """Per-trajectory totals, breakdowns, errors and metrics of one group, plus a group error.

    Attributes:
        totals: The reward of each trajectory (``None``: unknown).
        breakdown: Each trajectory's component values (component name -> value).
        errors: Each trajectory's errors (component name -> error text).
        traj_metrics: Extra metrics per trajectory (e.g. the judge's explanation).
        group_error: Why a group reward could not score the group (sets ``judge_error``).
        group_metrics: Metrics of the group (judge calls, tokens, cost...).
    """

    totals: list[float | None]
    breakdown: list[dict[str, float | None]]
    errors: list[dict[str, str]]
    traj_metrics: list[dict[str, Any]]
    group_error: str | None = None
    group_metrics: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def empty(cls, n: int) -> GroupScores:
        """Scores of ``n`` trajectories, all unknown."""
        return cls(
            totals=[None] * n,
            breakdown=[{} for _ in range(n)],
            errors=[{} for _ in range(n)],
            traj_metrics=[{} for _ in range(n)],
        )

    @property
    def num_errors(self) -> int:
        """How many (trajectory, component) values failed."""
        return sum(len(e) for e in self.errors)

    def apply(self, group: TrajectoryGroup) -> None:
        """Writes the scores into ``group`` and its trajectories (replacing earlier rewards)."""
        if len(self.totals) != len(group):
            raise ValueError(f"{len(self.totals)} scores for a group of {len(group)} trajectories")
        for traj, total, parts, errors, extra in zip(
            group, self.totals, self.breakdown, self.errors, self.traj_metrics, strict=True
        ):
            traj.reward = total
            traj.reward_breakdown = dict(parts)
            if errors:
                traj.metrics[ERRORS_KEY] = dict(errors)
            else:
                traj.metrics.pop(ERRORS_KEY, None)
            traj.metrics.update(extra)
        if self.group_error is not None:
            group.outcome = "judge_error"
            group.error = self.group_error
        elif group.outcome == "judge_error":
            group.outcome, group.error = "ok", None
        group.metrics.update(self.group_metrics)
        group.metrics[ERRORS_KEY] = self.num_errors
