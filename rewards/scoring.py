"""``score_groups``: apply a reward, rubric or judge to the groups ``collect`` returned.

Each trajectory gets its ``reward`` and ``reward_breakdown``; errors go to its
``metrics["reward_errors"]`` (value ``None``, never a silent 0); a group a judge could not score
gets ``outcome="judge_error"`` and the reason in ``error``. Groups are scored concurrently
(a judge limits its own in-flight calls).

Example:
    >>> import envkit
    >>> from envkit.policies import CallablePolicy
    >>> from envkit.rewards import score_groups
    >>> groups = envkit.collect("Arithmetic-v0", CallablePolicy(lambda m, t: "The answer is 3"),
    ...                         seeds=[0], group_size=2, progress=False)
    >>> report = score_groups(groups, "regex_match", options={"pattern": r"answer is \\d+"})
    >>> groups[0].rewards, report.errors
    ([1.0, 1.0], 0)
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from envkit._async import run_sync
from envkit.rewards.result import GroupScores
from envkit.types import TrajectoryGroup

__all__ = ["Scorer", "ScoringReport", "as_scorer", "ascore_groups", "score_groups"]


@runtime_checkable
class Scorer(Protocol):
    """What ``score_groups`` accepts. ``Reward``, ``Rubric`` and ``RulerJudge`` follow it through
    their shared base class ``envkit.rewards.base.BaseScorer``; other objects may too."""

    name: str

    async def evaluate(self, group: TrajectoryGroup) -> GroupScores:
        """Scores a group without changing it."""
        ...

    async def score_group(self, group: TrajectoryGroup) -> list[float | None]:
        """Scores a group in place and returns its rewards."""
        ...

    def with_name(self, name: str) -> Any:
        """A copy under another name."""
        ...

    def bind(self, **options: Any) -> Any:
        """A copy with options bound."""
        ...


def as_scorer(obj: Any) -> Scorer:
    """A ``Scorer`` from a registered name, a ``Reward``/``Rubric``/``RulerJudge`` or a function.

    A plain function is a per-trajectory reward named after it (``@reward(group=True)``-decorated
    functions keep their registration's settings).

    Raises:
        KeyError: an unknown reward name.
        TypeError: ``obj`` is none of the above.
    """
    from envkit.rewards.registry import _ATTR, Reward, get

    if isinstance(obj, str):
        return get(obj)
    registered = getattr(obj, _ATTR, None)
    if isinstance(registered, Reward):
        return registered
    if isinstance(obj, Scorer):
        return obj
    if isinstance(obj, functools.partial):
        inner = getattr(obj.func, _ATTR, None)
        if isinstance(inner, Reward) and not obj.args:
            return inner.bind(**obj.keywords)
    if callable(obj):
        return Reward(obj)
    raise TypeError(
        f"cannot score with {obj!r} ({type(obj).__name__}); pass a reward name, a function "
        "fn(trajectory, **kw) -> float | None, a Reward, a Rubric or a RulerJudge"
    )


class ScoringReport(BaseModel):
    """What ``score_groups`` did: counts of scored trajectories, errors and judge failures."""

    groups: int = 0
    trajectories: int = 0
    scored: int = Field(0, description="Trajectories whose reward is known.")
    errors: int = Field(
        0, description="(trajectory, component) values that raised or were invalid."
    )
    judge_errors: int = Field(0, description="Groups whose outcome is judge_error.")
    error_messages: list[str] = Field(
        default_factory=list, description="Up to 10 distinct error texts, for a log line."
    )


async def ascore_groups(
    groups: TrajectoryGroup | Sequence[TrajectoryGroup],
    scorer: Any,
    *,
    options: Mapping[str, Any] | None = None,
) -> ScoringReport:
    """Scores ``groups`` in place with ``scorer`` (see the module doc); async.

    Args:
        groups: The groups (or one group) to score.
        scorer: A reward name, function, ``Reward``, ``Rubric`` or ``RulerJudge``.
        options: Options to bind to a single reward (``Reward.bind``).

    Returns:
        A ``ScoringReport``.
    """
    if isinstance(groups, TrajectoryGroup):
        groups = [groups]
    for g in groups:
        if not isinstance(g, TrajectoryGroup):
            raise TypeError(f"score_groups takes TrajectoryGroups, got {type(g).__name__}")
    s = as_scorer(scorer)
    if options:
        s = s.bind(**options)
    results = await asyncio.gather(*(s.evaluate(g) for g in groups))
    report = ScoringReport(groups=len(groups))
    seen: set[str] = set()
    for group, scores in zip(groups, results, strict=True):
        scores.apply(group)
        report.trajectories += len(group)
        report.scored += sum(1 for r in scores.totals if r is not None)
        report.errors += scores.num_errors
        report.judge_errors += scores.group_error is not None
        texts = [e for errs in scores.errors for e in errs.values()]
        for text in [*texts, *([scores.group_error] if scores.group_error else [])]:
            if text not in seen and len(report.error_messages) < 10:
                seen.add(text)
                report.error_messages.append(text)
    return report


def score_groups(
    groups: TrajectoryGroup | Sequence[TrajectoryGroup],
    scorer: Any,
    *,
    options: Mapping[str, Any] | None = None,
) -> ScoringReport:
    """``ascore_groups`` for synchronous code (also works inside a running event loop)."""
    return run_sync(ascore_groups(groups, scorer, options=options))
