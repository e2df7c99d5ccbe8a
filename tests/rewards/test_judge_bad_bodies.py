"""RulerJudge against HTTP 200 answers with bad bodies, and its one request budget per group.

A real OpenAI-compatible server on 127.0.0.1 answers; litellm is the client. Every bad answer
must end as a recorded ``judge_error`` with the reason (rewards ``None``), never a crash and
never a silent 0; the requests a group costs are counted at the server.
"""

from __future__ import annotations

import json

import pytest
from rewards_support import group, judge_for, score_of_answer

from envkit.rewards import JudgeConfig, score_groups
from envkit.testing import Reply, ScriptedOpenAIServer, ruler_responder

ANSWERS = ("It is 391.", "It is 400.")
NO_CHOICES = {"id": "x", "object": "chat.completion", "created": 0, "model": "judge-test"}
CUT_JSON = '{"scores": [{"id": "T1", "explanation": "It computes 17*23 corr'


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(body=NO_CHOICES), "no 'choices'"),
        (Reply(body={**NO_CHOICES, "choices": []}), "without choices"),
        (Reply(content=None), "content: null"),
        (Reply(content=CUT_JSON, finish_reason="length"), "finish_reason='length'"),
        (Reply(content="Sure! T1 is better."), "not valid JSON"),
    ],
    ids=["no-choices", "empty-choices", "null-content", "cut-json", "prose"],
)
def test_bad_bodies_are_recorded_judge_errors(
    server: ScriptedOpenAIServer, reply: Reply, reason: str
) -> None:
    server.responder = lambda request: reply
    g = group(*ANSWERS)
    report = score_groups(g, judge_for(server, max_retries=1, max_invalid_retries=1))
    assert g.rewards == [None, None]  # unknown, not 0
    assert g.outcome == "judge_error" and reason in (g.error or ""), g.error
    assert report.judge_errors == 1 and report.scored == 0
    assert all(reason in t.metrics["reward_errors"]["judge"] for t in g)
    assert 1 <= len(server.requests) <= 4


def test_a_cut_off_answer_then_a_good_one_scores(server: ScriptedOpenAIServer) -> None:
    server.script(Reply(content=CUT_JSON, finish_reason="length"))
    server.responder = ruler_responder(score_of_answer)
    g = group(*ANSWERS)
    assert judge_for(server).score_group_sync(g) == [1.0, 0.3]
    assert len(server.requests) == 2
    fix = server.requests[1].messages[-1]["content"]
    assert "finish_reason='length'" in fix and "max_tokens" in fix  # the model is told why


@pytest.mark.parametrize(
    ("options", "budget"),
    [
        ({"max_retries": 4, "max_invalid_retries": 2}, 8),  # the defaults: 15 per order before
        ({"max_retries": 4, "max_invalid_retries": 2, "both_orders": True}, 8),
        ({"max_retries": 4, "max_invalid_retries": 2, "max_requests_per_group": 3}, 3),
        ({"max_retries": 1, "max_invalid_retries": 0, "max_requests_per_group": 50}, 2),
    ],
    ids=["defaults", "both-orders", "small-budget", "retries-below-budget"],
)
def test_one_request_budget_per_group_counted_at_the_server(
    server: ScriptedOpenAIServer, options: dict, budget: int
) -> None:
    # Four 500s then an invalid answer, again and again: transport retries nest inside answer
    # retries (before the budget: (1 + 4) * (1 + 2) = 15 requests per order).
    replies = iter(([Reply(status=500)] * 4 + [Reply(content="not json")]) * 20)
    server.responder = lambda request: next(replies)
    g = group(*ANSWERS)
    judge = judge_for(server, **options)
    assert judge.score_group_sync(g) == [None, None]
    assert len(server.requests) == budget
    assert g.metrics["judge_calls"] == budget and judge.stats.calls == budget
    assert g.outcome == "judge_error"
    if budget == options.get("max_requests_per_group", 8):
        assert "budget is spent" in (g.error or "")


def test_the_budget_is_per_group(server: ScriptedOpenAIServer) -> None:
    server.responder = lambda request: Reply(status=503)
    groups = [group(*ANSWERS, seed=s) for s in range(3)]
    judge = judge_for(server, max_requests_per_group=2)
    score_groups(groups, judge)
    assert len(server.requests) == 6 and [g.metrics["judge_calls"] for g in groups] == [2] * 3


def test_budget_config_is_checked() -> None:
    assert JudgeConfig().max_requests_per_group == 8
    with pytest.raises(ValueError, match="max_requests_per_group >= 2"):
        JudgeConfig(both_orders=True, max_requests_per_group=1)
    with pytest.raises(ValueError):
        JudgeConfig(max_requests_per_group=0)


def test_bad_bodies_never_poison_the_cache(server: ScriptedOpenAIServer, tmp_path) -> None:
    server.script(Reply(content=None))
    server.responder = ruler_responder(score_of_answer)
    judge = judge_for(server, cache=tmp_path, max_retries=0, max_invalid_retries=0)
    g = group(*ANSWERS)
    assert judge.score_group_sync(g) == [None, None]
    assert judge.score_group_sync(g) == [1.0, 0.3]  # asked again, not a cached failure
    cached = [json.loads(p.read_text()) for p in tmp_path.rglob("*.json")]
    assert len(cached) == 1 and cached[0]["content"]
