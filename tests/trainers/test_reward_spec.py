"""How run.json records the reward: judges are recognised by type, not by class name."""

from __future__ import annotations

from envkit.rewards.judge import RulerJudge
from envkit.trainers.grpo import _reward_spec


class _MyJudge(RulerJudge):
    """A user's judge: a RulerJudge under another class name."""


class RulerJudge2:
    """Not a judge, though its class name starts like one."""

    model = "not-a-judge"


def test_a_judge_subclass_is_recorded_as_a_judge() -> None:
    assert _reward_spec(RulerJudge("openai/j", cache=False)) == {"judge": "openai/j"}
    # The old check compared type(reward).__name__ with "RulerJudge": a subclass lost it.
    assert _reward_spec(_MyJudge("openai/mine", cache=False)) == {"judge": "openai/mine"}


def test_a_class_named_like_a_judge_is_not_one() -> None:
    Impostor = type("RulerJudge", (RulerJudge2,), {})  # the old check took it for a judge
    spec = _reward_spec(Impostor())
    assert "judge" not in spec and spec["repr"].startswith("<")
    assert _reward_spec("exact_match") == "exact_match" and _reward_spec(None) is None
