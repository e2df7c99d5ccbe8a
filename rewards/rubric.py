"""``Rubric``: a weighted sum of rewards, with each component's value kept on the trajectory.

Components (per-trajectory rewards, group rewards, an LLM judge, even another rubric) are
evaluated concurrently. A component that raised is recorded (value ``None``, the error in the
trajectory's ``metrics["reward_errors"]``) and counted; the total is then ``None`` (unknown), unless
``on_missing="skip"`` sums only the components that are known.

Example:
    >>> from envkit.rewards import Rubric
    >>> from envkit.types import Message, Trajectory, TrajectoryGroup
    >>> rubric = Rubric([("numeric_match", 0.8), ("regex_match", 0.2)],
    ...                 options={"regex_match": {"pattern": r"^\\d+$"}})
    >>> traj = Trajectory(env_id="e", reference=56,
    ...                   messages=[Message(role="assistant", content="56")])
    >>> group = TrajectoryGroup(env_id="e", trajectories=[traj])
    >>> rubric.score_group_sync(group)
    [1.0]
    >>> group[0].reward_breakdown
    {'numeric_match': 1.0, 'regex_match': 1.0}
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from envkit.rewards.base import BaseScorer
from envkit.rewards.result import GroupScores
from envkit.types import TrajectoryGroup

__all__ = ["Rubric"]


class Rubric(BaseScorer):
    """A weighted sum of rewards.

    Args:
        components: ``(reward, weight)`` pairs; a reward is a registered name, a function, a
            ``Reward``, a ``RulerJudge`` or a ``Rubric``. Weights are finite (negative ones
            penalize). Component names must be unique (``Reward.with_name`` renames).
        name: The rubric's name when it is itself a component.
        on_missing: ``"none"``: the total is ``None`` when any component is unknown;
            ``"skip"``: the total sums the known components (``None`` if none is known).
        options: Options to bind per component name (``{"numeric_match": {"tolerance": 0.1}}``).

    Raises:
        ValueError: no components, a weight that is not finite, or duplicate names.
    """

    def __init__(
        self,
        components: Sequence[tuple[Any, float]],
        *,
        name: str = "rubric",
        on_missing: Literal["none", "skip"] = "none",
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        from envkit.rewards.scoring import as_scorer

        if isinstance(components, (str, bytes)) or not components:
            raise ValueError("a Rubric needs a non-empty list of (reward, weight) pairs")
        if on_missing not in ("none", "skip"):
            raise ValueError(f"on_missing must be 'none' or 'skip', got {on_missing!r}")
        self.name = name
        self.on_missing = on_missing
        self.components: list[tuple[Any, float]] = []
        for item in components:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise ValueError(f"each Rubric component is a (reward, weight) pair, got {item!r}")
            scorer, weight = as_scorer(item[0]), item[1]
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ValueError(f"the weight of {scorer.name!r} must be a number, got {weight!r}")
            if not math.isfinite(weight):
                raise ValueError(f"the weight of {scorer.name!r} must be finite, got {weight}")
            self.components.append((scorer, float(weight)))
        names = [s.name for s, _ in self.components]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(
                f"duplicate component names {dups}; rename one with reward.with_name('other')"
            )
        unknown = sorted(set(options or {}) - set(names))
        if unknown:
            raise ValueError(f"options given for {unknown}, which are not components ({names})")
        for i, (scorer, weight) in enumerate(self.components):
            if options and scorer.name in options:
                self.components[i] = (scorer.bind(**options[scorer.name]), weight)

    @property
    def weights(self) -> dict[str, float]:
        """Component name -> weight."""
        return {s.name: w for s, w in self.components}

    def bind(self, **options: Any) -> Rubric:
        """Rubrics take no options; bind them on the components instead."""
        raise TypeError("bind options on a Rubric's components (Rubric(..., options={...}))")

    def __repr__(self) -> str:
        parts = ", ".join(f"({s.name!r}, {w})" for s, w in self.components)
        return f"Rubric([{parts}])"

    async def evaluate(self, group: TrajectoryGroup) -> GroupScores:
        """Scores a group without changing it."""
        results = await asyncio.gather(*(s.evaluate(group) for s, _ in self.components))
        out = GroupScores.empty(len(group))
        reasons = [
            f"{s.name}: {r.group_error}"
            for (s, _), r in zip(self.components, results, strict=True)
            if r.group_error
        ]
        out.group_error = "; ".join(reasons) or None
        for res in results:
            out.group_metrics.update(res.group_metrics)
        for i, traj in enumerate(group):
            if traj.failed:
                continue
            terms: list[float] = []
            missing = False
            for (scorer, weight), res in zip(self.components, results, strict=True):
                value = res.totals[i]
                out.breakdown[i][scorer.name] = value
                if len(res.breakdown[i]) > 1 or (
                    res.breakdown[i] and scorer.name not in res.breakdown[i]
                ):
                    for k, v in res.breakdown[i].items():
                        out.breakdown[i][f"{scorer.name}/{k}"] = v
                for k, err in res.errors[i].items():
                    out.errors[i][k if k == scorer.name else f"{scorer.name}/{k}"] = err
                out.traj_metrics[i].update(res.traj_metrics[i])
                if value is None:
                    missing = True
                else:
                    terms.append(weight * value)
            if terms and (not missing or self.on_missing == "skip"):
                out.totals[i] = math.fsum(terms)
        return out
