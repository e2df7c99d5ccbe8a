"""The RULER judge: an LLM ranks a whole group of trajectories in one call.

Shows: ``RulerJudge`` against an OpenAI-compatible server (here envkit's ``ScriptedOpenAIServer``
on 127.0.0.1, standing in for vLLM, llama.cpp or OpenAI, so this runs offline), a rubric of your
own, the scores and explanations it writes on each trajectory, the judge's call statistics, and
how well its ranking agrees with the env's own reward (``agreement``).

To judge with a real model, start any OpenAI-compatible server and replace ``server.url`` with
its URL (``api_base="http://127.0.0.1:8000/v1"``) and ``openai/scripted`` with its model name,
or drop ``api_base`` and use e.g. ``"openai/gpt-4o-mini"`` with ``OPENAI_API_KEY`` set.

Run:
    python examples/ruler_judge.py
"""

from __future__ import annotations

import operator
import re
from collections import Counter
from typing import Any

import envkit
from envkit.parsing import final_response
from envkit.policies import CallablePolicy
from envkit.rewards import RulerJudge, agreement, score_groups
from envkit.testing import ScriptedOpenAIServer, ruler_responder

ASKED: Counter[str] = Counter()
RUBRIC = "Prefer answers that show their working and are correct."
OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}
WORKING = re.compile(r"-?\d+ [-+*] -?\d+ = -?\d+")


def student(messages: list[dict[str, Any]], tools: Any) -> str:
    """Each question's first reply is right with its working, the second a wrong guess."""
    question = messages[-1]["content"]
    ASKED[question] += 1
    a, op, b = question.split("?")[0].split()[2:5]
    right = OPS[op](int(a), int(b))
    return f"{a} {op} {b} = {right}" if ASKED[question] == 1 else "Probably 7."


def fake_judge_score(trajectory_text: str) -> float:
    """What the scripted judge model answers: 0.9 for shown working, 0.1 for a guess."""
    return 0.9 if WORKING.search(trajectory_text) else 0.1


def main() -> None:
    groups = envkit.collect(
        "Arithmetic-v0",
        CallablePolicy(student),
        seeds=range(4),
        group_size=2,
        env_kwargs={"max_turns": 1},
        progress=False,
    )
    env_rewards = [g.rewards for g in groups]
    with ScriptedOpenAIServer(responder=ruler_responder(fake_judge_score)) as server:
        judge = RulerJudge(
            "openai/scripted",
            rubric=RUBRIC,
            api_base=server.url,
            api_key="sk-local",  # any key: local servers accept it
        )
        report = score_groups(groups, judge)
        requests = len(server.requests)
        rubric_sent = all(RUBRIC in r.raw for r in server.requests)
    print(f"report: {report}")
    print(f"judge requests: {requests} for {len(groups)} groups (rubric in each: {rubric_sent})")
    for t in groups[0]:
        explanation = {k: v for k, v in t.metrics.items() if k.endswith("_explanation")}
        print(f"reply {final_response(t)!r}: judge {t.reward} {explanation}")
    agree = agreement([g.rewards for g in groups], env_rewards)
    print(f"pairwise accuracy vs the env's reward: {agree.pairwise_accuracy:.2f}")


if __name__ == "__main__":
    main()
