"""Rewards for envkit trajectories: a registry, rubrics, verifiable rewards, an LLM judge, TRL.

* ``@reward`` registers ``fn(trajectory, **kw) -> float | None`` (or, with ``group=True``,
  ``fn(group) -> list[float | None]``); ``get(name)``, ``list_rewards()``.
* ``Rubric([(reward, weight), ...])``: a weighted sum with a per-component breakdown.
* Verifiable rewards: ``exact_match``, ``numeric_match``, ``regex_match``, ``json_valid``,
  ``tool_calls_valid``, ``length_penalty``, ``code_tests``.
* ``RulerJudge``: a RULER-style relative judge, one LLM call per group.
* ``score_groups`` / ``ascore_groups``: write rewards into the groups ``collect`` returned.
* ``to_trl``: any of them as a TRL ``GRPOTrainer`` reward function.
* ``agreement``: how well a judge agrees with a verifiable reward.

A reward that could not be computed is ``None`` with the error in the trajectory's
``metrics["reward_errors"]``, never a silent 0; a group the judge could not score gets
``outcome="judge_error"``.

Example:
    >>> import envkit
    >>> from envkit.policies import CallablePolicy
    >>> from envkit.rewards import Rubric, score_groups
    >>> groups = envkit.collect("Arithmetic-v0", CallablePolicy(lambda m, t: "It is 4."),
    ...                         seeds=[0], group_size=2, env_kwargs={"max_turns": 1},
    ...                         progress=False)
    >>> rubric = Rubric([("length_penalty", 1.0), ("regex_match", 0.5)],
    ...                 options={"length_penalty": {"limit": 5},
    ...                          "regex_match": {"pattern": r"\\d"}})
    >>> report = score_groups(groups, rubric)
    >>> groups[0][0].reward_breakdown
    {'length_penalty': -0.6, 'regex_match': 1.0}
"""

from __future__ import annotations

from envkit.rewards import verifiable
from envkit.rewards.base import BaseScorer
from envkit.rewards.diagnostics import AgreementReport, agreement, kendall_tau, spearman_rho
from envkit.rewards.judge import JudgeCache, JudgeConfig, JudgeStats, RulerJudge
from envkit.rewards.registry import (
    Reward,
    default_reward_for,
    get,
    list_rewards,
    register,
    reward,
    set_default_reward,
    unregister,
)
from envkit.rewards.result import GroupScores
from envkit.rewards.rubric import Rubric
from envkit.rewards.scoring import Scorer, ScoringReport, as_scorer, ascore_groups, score_groups
from envkit.rewards.trl import TRLReward, to_trl
from envkit.rewards.verifiable import (
    CodeTest,
    code_tests,
    exact_match,
    json_valid,
    length_penalty,
    numeric_match,
    regex_match,
    tool_calls_valid,
)

__all__ = [
    "AgreementReport",
    "BaseScorer",
    "CodeTest",
    "GroupScores",
    "JudgeCache",
    "JudgeConfig",
    "JudgeStats",
    "Reward",
    "Rubric",
    "RulerJudge",
    "Scorer",
    "ScoringReport",
    "TRLReward",
    "agreement",
    "as_scorer",
    "ascore_groups",
    "code_tests",
    "default_reward_for",
    "exact_match",
    "get",
    "json_valid",
    "kendall_tau",
    "length_penalty",
    "list_rewards",
    "numeric_match",
    "regex_match",
    "register",
    "reward",
    "score_groups",
    "set_default_reward",
    "spearman_rho",
    "to_trl",
    "tool_calls_valid",
    "unregister",
    "verifiable",
]
