"""One scorer base: ``Reward``, ``Rubric`` and ``RulerJudge`` share one implementation."""

from __future__ import annotations

import pytest

from envkit.rewards import BaseScorer, Reward, Rubric, RulerJudge, get
from envkit.types import Message, Trajectory, TrajectoryGroup


@pytest.mark.parametrize("cls", [Reward, Rubric, RulerJudge])
@pytest.mark.parametrize("method", ["score_group", "score_group_sync", "with_name"])
def test_one_implementation(cls: type, method: str) -> None:
    assert issubclass(cls, BaseScorer)
    assert getattr(cls, method) is getattr(BaseScorer, method)


def _group() -> TrajectoryGroup:
    t = Trajectory(env_id="e", reference=4, messages=[Message(role="assistant", content="4")])
    return TrajectoryGroup(env_id="e", trajectories=[t])


def test_with_name_copies_and_keeps_behaviour() -> None:
    reward = get("numeric_match")
    renamed = reward.with_name("num")
    assert (renamed.name, reward.name) == ("num", "numeric_match")
    g = _group()
    assert renamed.score_group_sync(g) == [1.0] and g[0].reward_breakdown == {"num": 1.0}
    bound = reward.bind(rel_tol=0.5).with_name("loose")
    assert bound.options == {"rel_tol": 0.5} and reward.options == {}
    with pytest.raises(ValueError, match="invalid reward name"):
        reward.with_name("bad name!")
    rubric = Rubric([("numeric_match", 1.0)]).with_name("total")
    assert rubric.name == "total" and rubric.score_group_sync(_group()) == [1.0]
    judge = RulerJudge("openai/x", cache=False)
    copy = judge.with_name("j2")
    assert copy.name == "j2" and judge.name == "judge" and copy.stats is judge.stats


def test_a_scorer_must_implement_evaluate() -> None:
    class NoEvaluate(BaseScorer):
        name = "none"

    # Caught when the scorer is created, not when a group is first scored.
    with pytest.raises(TypeError, match="evaluate"):
        NoEvaluate()
