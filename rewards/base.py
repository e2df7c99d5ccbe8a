"""``BaseScorer``: what rewards, rubrics and the judge share: scoring in place, renaming.

A scorer computes a ``GroupScores`` without touching the group (``evaluate``, the one method a
subclass must write); ``score_group`` applies it, ``score_group_sync`` does so from synchronous
code, and ``with_name`` returns a renamed copy. ``Reward``, ``Rubric`` and ``RulerJudge`` all
derive from it, so these behave the same everywhere.

Example:
    >>> from envkit.rewards.result import GroupScores
    >>> from envkit.types import Trajectory, TrajectoryGroup
    >>> class Ones(BaseScorer):
    ...     name = "ones"
    ...     async def evaluate(self, group):
    ...         scores = GroupScores.empty(len(group))
    ...         scores.totals = [1.0] * len(group)
    ...         return scores
    >>> group = TrajectoryGroup(env_id="e", trajectories=[Trajectory(env_id="e")])
    >>> Ones().with_name("twos").score_group_sync(group), Ones().name
    ([1.0], 'ones')
"""

from __future__ import annotations

import abc
from typing import Any

from envkit._async import run_sync
from envkit.rewards.result import GroupScores
from envkit.types import TrajectoryGroup

__all__ = ["BaseScorer"]


class BaseScorer(abc.ABC):
    """Base class of ``Reward``, ``Rubric`` and ``RulerJudge``.

    Attributes:
        name: The name in breakdowns, metrics, rubrics and the registry.
    """

    name: str

    @abc.abstractmethod
    async def evaluate(self, group: TrajectoryGroup) -> GroupScores:
        """Scores a group without changing it (a subclass that lacks it cannot be created)."""

    async def score_group(self, group: TrajectoryGroup) -> list[float | None]:
        """Scores ``group`` in place (``reward``, ``reward_breakdown``, errors in ``metrics``).

        Returns the rewards in the group's order; ``None`` where unknown (failed episodes, errors;
        a group a judge could not score gets ``outcome="judge_error"``).
        """
        scores = await self.evaluate(group)
        scores.apply(group)
        return list(scores.totals)

    def score_group_sync(self, group: TrajectoryGroup) -> list[float | None]:
        """``score_group`` for synchronous code (also inside a running event loop)."""
        return run_sync(self.score_group(group))

    def _copy(self) -> Any:
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        return out

    def _check_name(self, name: str) -> str:
        return name

    def with_name(self, name: str) -> Any:
        """A copy under another name (to use one scorer twice in a ``Rubric``)."""
        out = self._copy()
        out.name = self._check_name(name)
        return out

    def bind(self, **options: Any) -> Any:
        """A copy with ``options`` bound; what they mean depends on the scorer."""
        raise TypeError(f"{type(self).__name__} takes no options")
