"""``envkit eval`` end to end against scripted OpenAI-compatible servers on 127.0.0.1.

The policy (and the judge) are real litellm clients; the servers are ``ScriptedOpenAIServer``s
that answer Arithmetic-v0 questions and RULER judge prompts.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envkit.cli.evaluate import LOCAL_API_KEY
from envkit.cli.main import app
from envkit.testing import Reply, ScriptedOpenAIServer, ruler_responder
from envkit.testing.replies import RecordedRequest
from envkit.types import TrajectoryGroup, read_jsonl

runner = CliRunner()

QUESTION = re.compile(r"What is (-?\d+) ([-+*]) (-?\d+)\?")
WRONG = "I do not know."
SEEDS = [7, 8, 9]


def flat(text: str) -> str:
    """Output with rich's line wrapping and table borders undone."""
    return " ".join(text.replace("│", " ").replace("┃", " ").split())


def solve(question: str) -> str:
    """The right answer to an Arithmetic-v0 question ("What is 3 + 4? ..."), or ``WRONG``."""
    match = QUESTION.search(question)
    if not match:
        return WRONG
    a, op, b = int(match[1]), match[2], int(match[3])
    return str({"+": a + b, "-": a - b, "*": a * b}[op])


def solve_arithmetic(request: RecordedRequest) -> str:
    """A policy that answers every question right."""
    return solve(request.user_text)


class RightOnce:
    """A policy that answers each question right the first time, then ``WRONG``: in a group of
    two, one episode earns 1 and the other 0, whatever order the requests arrive in."""

    def __init__(self) -> None:
        self.asked: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> str:
        with self.lock:
            self.asked[request.user_text] += 1
            first = self.asked[request.user_text] == 1
        return solve(request.user_text) if first else WRONG


def eval_args(api_base: str, out: Path, *extra: str) -> list[str]:
    return [
        "eval",
        "Arithmetic-v0",
        "--model",
        "openai/policy-model",
        "--api-base",
        api_base,
        "-n",
        str(len(SEEDS)),
        "-g",
        "2",
        "-c",
        "4",
        "--seed",
        str(SEEDS[0]),
        "--max-tokens",
        "8",
        "--kwarg",
        "max_turns=1",
        "--out",
        str(out),
        *extra,
    ]


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No provider key in the environment; the judge's disk cache in a temporary directory."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("ENVKIT_CACHE_DIR", str(tmp_path / "cache"))


def test_eval_against_a_local_openai_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "eval.jsonl"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")  # litellm uses the provider's env key
    with ScriptedOpenAIServer(responder=solve_arithmetic, usage=(12, 1)) as server:
        args = eval_args(server.url, out)
        args[args.index("openai/policy-model")] = "openai/fake-model"
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output + str(result.exception)
        requests = server.requests
    text = flat(result.output)
    assert "mean reward 1.0000" in text and "pass@1 1.0000" in text and "outcome ok 6" in text
    assert f"wrote 3 groups to {out}" in text
    assert len(requests) == 6
    assert {r.body["model"] for r in requests} == {"fake-model"}
    assert {r.authorization for r in requests} == {"Bearer sk-local-test"}
    assert {r.body.get("max_tokens", r.body.get("max_completion_tokens")) for r in requests} == {8}
    groups = read_jsonl(out, TrajectoryGroup)
    assert [g.seed for g in groups] == SEEDS
    assert all(len(g) == 2 and g.rewards == [1.0, 1.0] for g in groups)
    assert groups[0][0].usage is not None and groups[0][0].usage.completion_tokens == 1
    for g in groups:
        question = next(m.content for m in g[0].messages if m.role == "user")
        answer = next(m.content for m in reversed(g[0].messages) if m.role == "assistant")
        assert answer == solve(question) != WRONG


@pytest.mark.parametrize(
    ("env_key", "options", "sent"),
    [
        (None, [], f"Bearer {LOCAL_API_KEY}"),  # litellm needs a key even for a local server
        ("sk-from-env", [], "Bearer sk-from-env"),
        ("sk-from-env", ["--api-key", "sk-from-cli"], "Bearer sk-from-cli"),
        (None, ["--api-key", "sk-from-cli"], "Bearer sk-from-cli"),
    ],
    ids=["placeholder", "env", "option-over-env", "option"],
)
def test_api_key_sent_to_the_server(
    no_keys: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    env_key: str | None,
    options: list[str],
    sent: str,
) -> None:
    if env_key is not None:
        monkeypatch.setenv("OPENAI_API_KEY", env_key)
    with ScriptedOpenAIServer(responder=solve_arithmetic) as server:
        result = runner.invoke(app, eval_args(server.url, tmp_path / "o.jsonl", *options))
        assert result.exit_code == 0, result.output + str(result.exception)
        requests = server.requests
    assert len(requests) == 6 and {r.authorization for r in requests} == {sent}
    assert "mean reward 1.0000" in flat(result.output)


def judging(agree: bool):
    """A RULER judge that ranks right answers above ``WRONG`` ones, or the other way round."""
    good, bad = (0.9, 0.1) if agree else (0.1, 0.9)
    return ruler_responder(lambda text: bad if WRONG in text else good)


@pytest.mark.parametrize("agree", [True, False], ids=["agreeing-judge", "contrary-judge"])
@pytest.mark.parametrize("where", ["second-server", "same-server"])
def test_judge_scores_each_group_once_and_reports_agreement(
    no_keys: None, tmp_path: Path, agree: bool, where: str
) -> None:
    out = tmp_path / "judged.jsonl"
    policy, judge = RightOnce(), judging(agree)
    with (
        ScriptedOpenAIServer(responder=policy) as server,
        ScriptedOpenAIServer(responder=judge) as judge_server,
    ):
        if where == "same-server":  # one server answers both models
            server.responder = lambda r: judge(r) if r.body["model"] == "judge-model" else policy(r)
            judge_options = ["--judge-api-base", server.url]  # the judge reuses --api-key
        else:
            judge_options = ["--judge-api-base", judge_server.url, "--judge-api-key", "sk-judge"]
        options = ["--api-key", "sk-policy", "--judge", "openai/judge-model", *judge_options]
        result = runner.invoke(app, eval_args(server.url, out, *options))
        assert result.exit_code == 0, result.output + str(result.exception)
        requests = server.requests + judge_server.requests
    text = flat(result.output)
    policy_requests = [r for r in requests if r.body["model"] == "policy-model"]
    judge_requests = [r for r in requests if r.body["model"] == "judge-model"]
    assert len(policy_requests) == 6 and len(requests) == 9
    assert {r.authorization for r in policy_requests} == {"Bearer sk-policy"}
    # one judge request per group, each showing the group's two trajectories
    assert len(judge_requests) == len(SEEDS)
    assert all(len(r.trajectories) == 2 for r in judge_requests)
    questions = [QUESTION.search(r.user_text)[0] for r in judge_requests]
    assert len(set(questions)) == len(SEEDS)
    judge_key = "Bearer sk-policy" if where == "same-server" else "Bearer sk-judge"
    assert {r.authorization for r in judge_requests} == {judge_key}
    assert (where == "second-server") == (len(judge_server.requests) == len(SEEDS))
    # the agreement table
    assert "mean reward 0.5000" in text  # the env's view, before judging
    assert "judge openai/judge-model vs the env's reward" in text
    assert "groups judged 3" in text and "judge errors (groups) 0" in text
    assert "groups compared 3" in text
    if agree:
        assert "Spearman rho (mean per group) 1.0000" in text
        assert "Kendall tau (mean per group) 1.0000" in text
        assert "pairwise accuracy 1.0000" in text
    else:
        assert "Spearman rho (mean per group) -1.0000" in text
        assert "pairwise accuracy 0.0000" in text
    assert "judge error:" not in text
    # the JSONL: judge scores as rewards, the env's rewards kept in metrics["env_reward"]
    groups = read_jsonl(out, TrajectoryGroup)
    assert [g.seed for g in groups] == SEEDS
    for g in groups:
        assert g.outcome == "ok" and sorted(t.metrics["env_reward"] for t in g) == [0.0, 1.0]
        for t in g:
            answer = next(m.content for m in reversed(t.messages) if m.role == "assistant")
            right = answer != WRONG
            assert t.metrics["env_reward"] == (1.0 if right else 0.0)
            assert t.reward == pytest.approx(0.9 if right == agree else 0.1)
            assert t.reward_breakdown == {"judge": t.reward}


@pytest.mark.parametrize(
    ("failure", "calls_per_group", "reason"),
    [
        (Reply.fail(400, "the judge rejects this prompt"), 1, "the judge rejects this prompt"),
        (Reply.text("I refuse to answer in JSON."), 3, "not valid JSON"),
        (Reply.json({"ranking": ["T1", "T2"]}), 3, "does not fit the schema"),
    ],
    ids=["http-400", "not-json", "wrong-schema"],
)
def test_judge_failures_are_reported_and_the_run_completes(
    no_keys: None, tmp_path: Path, failure: Reply, calls_per_group: int, reason: str
) -> None:
    out = tmp_path / "judged.jsonl"
    with (
        ScriptedOpenAIServer(responder=RightOnce()) as server,
        ScriptedOpenAIServer(responder=lambda request: failure) as judge_server,
    ):
        options = ["--judge", "openai/judge-model", "--judge-api-base", judge_server.url]
        result = runner.invoke(app, eval_args(server.url, out, *options))
        judge_requests = judge_server.requests
    assert result.exit_code == 0, result.output + str(result.exception)
    assert result.exception is None
    text = flat(result.output)
    assert "groups judged 0" in text and "judge errors (groups) 3" in text
    assert "groups compared 0" in text and "Spearman rho (mean per group) n/a" in text
    assert "pairwise accuracy n/a" in text
    assert "judge error:" in text and reason in text
    assert len(judge_requests) == calls_per_group * len(SEEDS)
    assert {r.authorization for r in judge_requests} == {f"Bearer {LOCAL_API_KEY}"}
    # nothing lost: the env's rewards stay, the judge's are unknown (never a silent 0)
    groups = read_jsonl(out, TrajectoryGroup)
    assert f"wrote 3 groups to {out}" in text and len(groups) == 3
    for g in groups:
        assert g.outcome == "judge_error" and reason in (g.error or "")
        assert g.rewards == [None, None]
        assert sorted(t.metrics["env_reward"] for t in g) == [0.0, 1.0]
