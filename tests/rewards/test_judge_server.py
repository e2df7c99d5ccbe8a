"""RulerJudge against a real OpenAI-compatible server on 127.0.0.1, with litellm as the client."""

from __future__ import annotations

import json

import pytest
from rewards_support import SYSTEM, TASK, group, judge_for, score_of_answer

from envkit.rewards import JudgeCache, Rubric, score_groups
from envkit.testing import Reply, ScriptedOpenAIServer, ruler_answer, ruler_responder

ANSWERS = ("It is 391.", "It is 400.", "391, computed as 17*23.", "I don't know.")
EXPECTED = [1.0, 0.3, 1.0, 0.3]


def _ids(server: ScriptedOpenAIServer, k: int = -1) -> list[str]:
    return list(server.requests[k].trajectories)


def test_one_request_per_group_and_scores_follow_the_trajectories(
    server: ScriptedOpenAIServer,
) -> None:
    server.responder = ruler_responder(score_of_answer)
    judge = judge_for(server)
    groups = [group(*ANSWERS, seed=s) for s in range(3)]
    report = score_groups(groups, judge)
    assert len(server.requests) == 3  # calls = groups
    assert [g.rewards for g in groups] == [EXPECTED] * 3
    assert report.scored == 12 and report.errors == 0 and report.judge_errors == 0
    g = groups[0]
    assert g.outcome == "ok" and g.metrics["judge_calls"] == 1 and g.metrics["judge_retries"] == 0
    assert g[0].reward_breakdown == {"judge": 1.0}
    assert g[0].metrics["judge_explanation"].startswith("because T")
    assert judge.stats.calls == 3 and judge.stats.groups == 3
    assert judge.stats.prompt_tokens == 300 and judge.stats.completion_tokens == 60


def test_request_is_what_litellm_sends_to_an_openai_server(server: ScriptedOpenAIServer) -> None:
    server.responder = ruler_responder(score_of_answer)
    judge_for(server, temperature=0.0, max_tokens=500).score_group_sync(group(*ANSWERS))
    req = server.requests[0]
    assert req.path == "/v1/chat/completions"
    assert req.body["model"] == "judge-test"
    assert req.body["response_format"] == {"type": "json_object"}
    assert req.body["temperature"] == 0.0 and req.body["max_tokens"] == 500
    assert [m["role"] for m in req.body["messages"]] == ["system", "user"]


def test_shared_prefix_appears_exactly_once_in_the_request_body(
    server: ScriptedOpenAIServer,
) -> None:
    server.responder = ruler_responder(score_of_answer)
    judge_for(server).score_group_sync(group(*ANSWERS, turns=3))
    body = server.requests[0].raw
    system_json = json.dumps(SYSTEM)[1:-1]  # as it appears inside the JSON body
    assert body.count(system_json) == 1
    assert body.count(json.dumps(TASK)[1:-1]) == 1
    assert body.count("Evaluates an arithmetic expression.") == 1  # the tool schemas
    assert body.count("Let me compute step 0.") == 1  # a common first turn
    # without dedup the prefix is repeated in every trajectory
    judge_for(server, dedup_prefix=False).score_group_sync(group(*ANSWERS, turns=3))
    assert server.requests[1].raw.count(system_json) == len(ANSWERS)


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            lambda ids: ruler_answer({i: 0.5 for i in reversed(ids)}), id="reversed-order"
        ),
        pytest.param(
            lambda ids: "Here you go:\n```json\n" + ruler_answer({i: 0.5 for i in ids}) + "\n```",
            id="fenced-with-prose",
        ),
        pytest.param(
            lambda ids: json.dumps([{"id": i, "explanation": "", "score": 0.5} for i in ids]),
            id="bare-list",
        ),
    ],
)
def test_accepted_answer_shapes(server: ScriptedOpenAIServer, reply) -> None:
    server.responder = lambda req: Reply(reply(list(req.trajectories)))
    g = group(*ANSWERS)
    assert judge_for(server).score_group_sync(g) == [0.5] * 4
    assert len(server.requests) == 1 and g.outcome == "ok"


def test_scores_are_matched_by_id_not_position(server: ScriptedOpenAIServer) -> None:
    """The server answers in reverse order; each score must still land on its trajectory."""

    def respond(req):
        blocks = req.trajectories
        scores = {tid: score_of_answer(text) for tid, text in blocks.items()}
        return Reply(ruler_answer(dict(reversed(list(scores.items())))))

    server.responder = respond
    g = group(*ANSWERS)
    assert judge_for(server).score_group_sync(g) == EXPECTED


BAD_ANSWERS = {
    "missing-id": (lambda ids: ruler_answer({i: 0.5 for i in ids[:-1]}), "missing id"),
    "extra-id": (lambda ids: ruler_answer({**{i: 0.5 for i in ids}, "T99": 0.5}), "unknown id"),
    "duplicate-id": (
        lambda ids: json.dumps(
            {"scores": [{"id": i, "explanation": "", "score": 0.5} for i in [*ids, ids[0]]]}
        ),
        "duplicate id",
    ),
    "out-of-range": (lambda ids: ruler_answer({i: 7.0 for i in ids}), "outside [0, 1]"),
    "malformed-json": (lambda ids: '{"scores": [{"id": "T1", "score": 0.5', "not valid JSON"),
    "wrong-shape": (lambda ids: json.dumps({"ranking": ids}), "does not fit the schema"),
    "empty": (lambda ids: "", "empty"),
}


@pytest.mark.parametrize("case", BAD_ANSWERS)
def test_invalid_answer_is_retried_with_the_problem_named(
    server: ScriptedOpenAIServer, case: str
) -> None:
    bad, problem = BAD_ANSWERS[case]
    server.script(lambda req: Reply(bad(list(req.trajectories))))
    server.responder = ruler_responder(score_of_answer)
    g = group(*ANSWERS)
    judge = judge_for(server)
    assert judge.score_group_sync(g) == EXPECTED
    assert len(server.requests) == 2
    assert g.metrics["judge_calls"] == 2 and g.metrics["judge_retries"] == 1
    assert judge.stats.invalid_answers == 1
    followup = server.requests[1].body["messages"]
    assert [m["role"] for m in followup] == ["system", "user", "assistant", "user"]
    assert problem in followup[-1]["content"]
    assert server.requests[1].trajectories == server.requests[0].trajectories  # same ids


@pytest.mark.parametrize("case", BAD_ANSWERS)
def test_persistently_invalid_answer_is_a_judge_error(
    server: ScriptedOpenAIServer, case: str
) -> None:
    bad, problem = BAD_ANSWERS[case]
    server.responder = lambda req: Reply(bad(list(req.trajectories)))
    g = group(*ANSWERS)
    report = score_groups([g], judge_for(server, max_invalid_retries=2))
    assert len(server.requests) == 3
    assert g.rewards == [None] * 4  # never a silent 0
    assert g.outcome == "judge_error" and problem in (g.error or "")
    assert all(problem in t.metrics["reward_errors"]["judge"] for t in g)
    assert report.judge_errors == 1 and report.errors == 4 and report.scored == 0


def test_out_of_range_scores_are_clamped_only_when_asked(server: ScriptedOpenAIServer) -> None:
    server.responder = lambda req: Reply(
        ruler_answer(dict(zip(req.trajectories, [1.7, -0.4, 0.5, 1.0], strict=True)))
    )
    g = group(*ANSWERS)
    scores = judge_for(server, clamp=True).score_group_sync(g)
    assert sorted(scores) == [0.0, 0.5, 1.0, 1.0]
    assert len(server.requests) == 1 and g.outcome == "ok"


def test_429_then_success_is_retried_and_counted(server: ScriptedOpenAIServer) -> None:
    server.script(Reply(status=429, headers={"retry-after": "0"}))
    server.responder = ruler_responder(score_of_answer)
    g = group(*ANSWERS)
    judge = judge_for(server)
    assert judge.score_group_sync(g) == EXPECTED
    assert len(server.requests) == 2
    assert g.metrics["judge_retries"] == 1 and judge.stats.retries == 1


def test_retry_after_is_honoured(server: ScriptedOpenAIServer) -> None:
    server.script(Reply(status=429, headers={"retry-after": "0.3"}))
    server.responder = ruler_responder(score_of_answer)
    g = group(*ANSWERS)
    judge_for(server, backoff_max_s=5.0).score_group_sync(g)
    assert g.metrics["judge_latency_s"] >= 0.3


def test_5xx_exhausts_retries_then_judge_error(server: ScriptedOpenAIServer) -> None:
    server.responder = lambda req: Reply(status=500)
    g = group(*ANSWERS)
    judge = judge_for(server, max_retries=3)
    assert judge.score_group_sync(g) == [None] * 4
    assert len(server.requests) == 4  # 1 + 3 retries: litellm itself did not retry
    assert g.outcome == "judge_error"
    assert "after 4 attempts" in (g.error or "") and "InternalServerError" in (g.error or "")
    assert judge.stats.judge_errors == 1 and judge.stats.retries == 3


@pytest.mark.parametrize("status", [502, 503])
def test_other_5xx_then_success(server: ScriptedOpenAIServer, status: int) -> None:
    server.script(Reply(status=status), Reply(status=status))
    server.responder = ruler_responder(score_of_answer)
    g = group(*ANSWERS)
    assert judge_for(server).score_group_sync(g) == EXPECTED
    assert len(server.requests) == 3 and g.metrics["judge_retries"] == 2


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_are_not_retried(server: ScriptedOpenAIServer, status: int) -> None:
    server.responder = lambda req: Reply(status=status)
    g = group(*ANSWERS)
    assert judge_for(server).score_group_sync(g) == [None] * 4
    assert len(server.requests) == 1
    assert g.outcome == "judge_error" and "judge request failed" in (g.error or "")


def test_slow_response_times_out_and_is_retried(server: ScriptedOpenAIServer) -> None:
    server.script(
        lambda req: Reply(ruler_answer(dict.fromkeys(req.trajectories, 0.5)), delay_s=1.5)
    )
    server.responder = ruler_responder(score_of_answer)
    g = group(*ANSWERS)
    assert judge_for(server, timeout_s=0.3).score_group_sync(g) == EXPECTED
    assert len(server.requests) == 2 and g.metrics["judge_retries"] == 1


def test_always_slow_is_a_judge_error_not_a_hang(server: ScriptedOpenAIServer) -> None:
    server.responder = lambda req: Reply(ruler_answer({}), delay_s=1.0)
    g = group(*ANSWERS)
    judge_for(server, timeout_s=0.2, max_retries=1).score_group_sync(g)
    assert g.outcome == "judge_error" and "Timeout" in (g.error or "")
    assert len(server.requests) == 2


def test_cache_hits_send_no_request(server: ScriptedOpenAIServer, tmp_path) -> None:
    server.responder = ruler_responder(score_of_answer)
    cache = JudgeCache(tmp_path / "cache")
    groups = [group(*ANSWERS), group(*ANSWERS[::-1])]
    score_groups(groups, judge_for(server, cache=cache))
    assert len(server.requests) == 2 and len(cache) == 2
    again = [group(*ANSWERS), group(*ANSWERS[::-1])]
    judge = judge_for(server, cache=tmp_path / "cache")  # a new judge, same directory
    score_groups(again, judge)
    assert len(server.requests) == 2  # nothing sent
    assert [g.rewards for g in again] == [EXPECTED, EXPECTED[::-1]]
    assert judge.stats.cache_hits == 2 and judge.stats.calls == 0
    assert again[0].metrics["judge_cache_hits"] == 1 and again[0].metrics["judge_calls"] == 0
    # another model or another rubric is another key
    score_groups([group(*ANSWERS)], judge_for(server, "Be strict.", cache=cache))
    assert len(server.requests) == 3


def test_invalid_answers_are_not_cached(server: ScriptedOpenAIServer, tmp_path) -> None:
    server.responder = lambda req: Reply("not json")
    judge_for(server, cache=tmp_path, max_invalid_retries=0).score_group_sync(group(*ANSWERS))
    assert len(JudgeCache(tmp_path)) == 0


def test_shuffle_is_seeded_recorded_and_varies_between_groups(server: ScriptedOpenAIServer) -> None:
    server.responder = ruler_responder(score_of_answer)
    answers = [f"answer number {k}" for k in range(8)]
    first = [group(*answers, seed=0), group(*answers[::-1], seed=0)]
    score_groups(first, judge_for(server))
    orders = [g.metrics["judge_orders"][0] for g in first]
    assert all(sorted(o) == list(range(8)) for o in orders)
    assert orders[0] != list(range(8)) or orders[1] != list(range(8))
    # the trajectory shown first is recorded: a group's prompt has T1 = trajectory order[0]
    # (the two groups are judged concurrently: their requests arrive in either order)
    shown = sorted(r.trajectories["T1"] for r in server.requests[:2])
    expected = [answers[orders[0][0]], answers[::-1][orders[1][0]]]
    assert sorted(shown) == sorted(next(s for s in shown if e in s) for e in expected), (
        shown,
        expected,
    )
    # the same group again gets the same order (so a re-run hits the cache)
    again = group(*answers, seed=0)
    judge_for(server).score_group_sync(again)
    assert again.metrics["judge_orders"] == first[0].metrics["judge_orders"]
    assert again.metrics["judge_shuffle_seed"] == first[0].metrics["judge_shuffle_seed"]
    # another judge seed, another order
    other = group(*answers, seed=0)
    judge_for(server, seed=1).score_group_sync(other)
    assert other.metrics["judge_orders"] != first[0].metrics["judge_orders"]


def test_no_shuffle_keeps_the_group_order(server: ScriptedOpenAIServer) -> None:
    server.responder = ruler_responder(score_of_answer)
    g = group(*ANSWERS)
    judge_for(server, shuffle=False).score_group_sync(g)
    assert g.metrics["judge_orders"] == [[0, 1, 2, 3]]
    assert ANSWERS[0] in server.requests[0].trajectories["T1"]


def test_both_orders_averages_two_calls(server: ScriptedOpenAIServer) -> None:
    # a position-biased judge: whatever is shown first gets 1.0, the rest 0.0
    server.responder = lambda req: Reply(
        ruler_answer({tid: 1.0 if tid == "T1" else 0.0 for tid in req.trajectories})
    )
    g = group("a", "b", "c")
    scores = judge_for(server, both_orders=True).score_group_sync(g)
    assert len(server.requests) == 2 and g.metrics["judge_calls"] == 2
    first, second = g.metrics["judge_orders"]
    assert second == first[::-1]
    assert sorted(scores) == [0.0, 0.5, 0.5]


def test_concurrency_limit_across_groups(server: ScriptedOpenAIServer) -> None:
    server.responder = lambda req: Reply(
        ruler_answer(dict.fromkeys(req.trajectories, 0.5)), delay_s=0.2
    )
    groups = [group(*ANSWERS, seed=s) for s in range(6)]
    score_groups(groups, judge_for(server, max_concurrency=2))
    assert len(server.requests) == 6
    assert server.max_in_flight == 2  # concurrent, but never more than the limit


def test_failed_episodes_are_left_out_and_get_none(server: ScriptedOpenAIServer) -> None:
    server.responder = ruler_responder(score_of_answer)
    g = group(*ANSWERS)
    g[1].outcome, g[1].error = "env_error", "boom"
    scores = judge_for(server).score_group_sync(g)
    assert scores == [1.0, None, 1.0, 0.3]
    assert len(server.requests[0].trajectories) == 3
    assert "reward_errors" not in g[1].metrics  # the episode's own error says it all


def test_all_failed_sends_nothing(server: ScriptedOpenAIServer) -> None:
    g = group(*ANSWERS)
    for t in g:
        t.outcome = "timeout"
    assert judge_for(server).score_group_sync(g) == [None] * 4
    assert server.requests == [] and g.outcome == "ok"


def test_reward_hacking_flag_is_recorded(server: ScriptedOpenAIServer) -> None:
    def respond(req):
        ids = list(req.trajectories)
        hacked = {t for t, text in req.trajectories.items() if "special-cased" in text}
        return Reply(ruler_answer({t: 0.0 if t in hacked else 0.8 for t in ids}, hacked))

    server.responder = respond
    g = group("It is 391.", "I special-cased the test to print 391.")
    assert judge_for(server).score_group_sync(g) == [0.8, 0.0]
    assert g[1].metrics["judge_reward_hacking"] is True
    assert g[0].metrics["judge_reward_hacking"] is False


def test_token_and_cost_accounting(server: ScriptedOpenAIServer) -> None:
    server.responder = lambda req: Reply(
        ruler_answer(dict.fromkeys(req.trajectories, 0.5)), prompt_tokens=1000, completion_tokens=50
    )
    priced = judge_for(server, cost_per_token=(1e-6, 2e-6))
    g = group(*ANSWERS)
    priced.score_group_sync(g)
    assert g.metrics["judge_prompt_tokens"] == 1000 and g.metrics["judge_completion_tokens"] == 50
    assert g.metrics["judge_cost_usd"] == pytest.approx(1000 * 1e-6 + 50 * 2e-6)
    assert priced.stats.cost_usd == pytest.approx(0.0011)
    unpriced = judge_for(server)
    g2 = group(*ANSWERS)
    unpriced.score_group_sync(g2)
    assert g2.metrics["judge_cost_usd"] is None  # unknown, not 0
    assert unpriced.stats.cost_unknown_calls == 1


def test_judge_and_verifiable_reward_in_one_rubric(server: ScriptedOpenAIServer) -> None:
    server.responder = ruler_responder(score_of_answer)
    judge = judge_for(server)
    rubric = Rubric([(judge, 0.5), ("numeric_match", 0.5)])
    g = group(*ANSWERS, reference=391)
    # "391, computed as 17*23." ends with 23: numeric_match reads the last number
    assert rubric.score_group_sync(g) == [1.0, 0.15, 0.5, 0.15]
    assert g[1].reward_breakdown == {"judge": 0.3, "numeric_match": 0.0}
    assert len(server.requests) == 1
    # a judge failure makes the whole group unknown, the verifiable part stays visible
    server.responder = lambda req: Reply(status=500)
    g2 = group(*ANSWERS, reference=391)
    rubric2 = Rubric([(judge.bind(max_retries=0), 0.5), ("numeric_match", 0.5)])
    assert rubric2.score_group_sync(g2) == [None] * 4
    assert g2.outcome == "judge_error" and (g2.error or "").startswith("judge: ")
    assert g2[0].reward_breakdown == {"judge": None, "numeric_match": 1.0}


async def test_async_score_group_inside_a_running_loop(server: ScriptedOpenAIServer) -> None:
    server.responder = ruler_responder(score_of_answer)
    g = group(*ANSWERS)
    assert await judge_for(server).score_group(g) == EXPECTED
    g2 = group(*ANSWERS)
    assert judge_for(server).score_group_sync(g2) == EXPECTED  # sync twin works in a loop too


def test_a_judge_error_does_not_leak_to_other_groups(server: ScriptedOpenAIServer) -> None:
    def respond(req):
        if any("poison" in text for text in req.trajectories.values()):
            return Reply(status=400)
        return ruler_responder(score_of_answer)(req)

    server.responder = respond
    groups = [group(*ANSWERS, seed=0), group("poison", "x", seed=1), group(*ANSWERS, seed=2)]
    report = score_groups(groups, judge_for(server))
    assert [g.outcome for g in groups] == ["ok", "judge_error", "ok"]
    assert groups[0].rewards == EXPECTED and groups[1].rewards == [None, None]
    assert report.judge_errors == 1 and report.scored == 8
    # re-scoring a group successfully clears its judge_error
    server.responder = ruler_responder(score_of_answer)
    judge_for(server).score_group_sync(groups[1])
    assert groups[1].outcome == "ok" and groups[1].error is None


def test_unwritable_cache_warns_but_scores(server: ScriptedOpenAIServer, tmp_path) -> None:
    server.responder = ruler_responder(score_of_answer)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    g = group(*ANSWERS)
    with pytest.warns(UserWarning, match="could not write the judge cache"):
        judge_for(server, cache=blocker).score_group_sync(g)
    assert g.rewards == EXPECTED and g.outcome == "ok"
