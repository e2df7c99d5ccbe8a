"""Data for the viewer tests: real rollouts (tool calls, failures, hostile text), a real judge.

``sample_jsonl`` is what ``envkit eval --out`` writes: groups of a tool env run with a scripted
policy through ``envkit.rollout.collect``, two of them scored by a ``RulerJudge`` talking to a
scripted OpenAI-compatible server on 127.0.0.1. ``big_jsonl`` is 10,000 trajectories.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envkit import ChatEnv, Feedback, Task, ToolBox, tool
from envkit.policies import CallablePolicy
from envkit.rewards import RulerJudge
from envkit.rollout import collect
from envkit.testing.judge_answers import ruler_answer, trajectory_blocks
from envkit.testing.openai_server import RecordedRequest, Reply, ScriptedOpenAIServer
from envkit.types import TrajectoryGroup, write_jsonl

HOSTILE = (
    '</script><script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    '<b id="injected">bold</b><!-- comment'
)
"""Model text that would run, or add elements, if the page put it in as HTML."""

WORDS = ["cat", "dog", "owl", "fox"]


@pytest.fixture(scope="session")
def hostile() -> str:
    """``HOSTILE``: the model text of episode 1 of ``sample_jsonl``."""
    return HOSTILE


@tool
def spell(word: str) -> str:
    """Spells a word letter by letter.

    Args:
        word: The word to spell.
    """
    return "-".join(word)


class SayWordEnv(ChatEnv):
    """Say the word you are asked for (a ``spell`` tool helps); "no" and another try if wrong."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_turns=3, toolbox=ToolBox([spell]), **kwargs)

    def make_task(self, options: dict[str, Any] | None) -> Task:
        word = WORDS[int(self.np_random.integers(len(WORDS)))]
        return Task(messages=[{"role": "user", "content": f"Say {word}."}], answer=word)

    def respond(self, message: Any) -> Feedback:
        assert self.task is not None
        ok = (message.content or "").strip() == self.task.answer
        return Feedback(
            reward=1.0 if ok else 0.0,
            done=ok,
            messages=[] if ok else [{"role": "user", "content": "no"}],
            info={"correct": ok},
        )


def scripted_policy() -> CallablePolicy:
    """Episode k (in order): spells the word first when k is even, answers wrongly when
    k % 3 == 1 (episode 1 with hostile markup), fails like a dead server when k % 7 == 6."""
    episodes = itertools.count()
    current = {"k": -1}

    def act(messages: list[dict[str, Any]], tools: Any) -> dict[str, Any]:
        turn = sum(1 for m in messages if m["role"] == "assistant")
        if turn == 0:
            current["k"] = next(episodes)
        k = current["k"]
        word = messages[0]["content"].removeprefix("Say ").removesuffix(".")
        if k % 7 == 6:
            raise ConnectionError("model server down: connection refused (127.0.0.1:9)")
        if turn == 0 and k % 2 == 0:
            call = {"name": "spell", "arguments": json.dumps({"word": word})}
            return {
                "role": "assistant",
                "content": "Let me spell it.",
                "tool_calls": [{"id": f"call{k}", "type": "function", "function": call}],
            }
        if k % 3 == 1:
            return {"role": "assistant", "content": HOSTILE if k == 1 else f"not {word}"}
        return {"role": "assistant", "content": word}

    return CallablePolicy(act)


def judge_reply(request: RecordedRequest) -> Reply:
    """Scores a trajectory 0.9 when its text has no "not ", flags the "not " ones as hacking."""
    blocks = trajectory_blocks(request.user_text)
    scores = {tid: (0.2 if "not " in text else 0.9) for tid, text in blocks.items()}
    hacking = {tid for tid, text in blocks.items() if "not " in text}
    return Reply(content=ruler_answer(scores, hacking=hacking))


@pytest.fixture(scope="session")
def sample_groups() -> list[TrajectoryGroup]:
    """Six groups of three from real rollouts; groups 0 and 1 scored by a real RULER judge."""
    groups = collect(SayWordEnv, scripted_policy(), seeds=range(6), group_size=3, concurrency=1)
    with ScriptedOpenAIServer() as server:
        server.responder = judge_reply
        judge = RulerJudge("openai/judge-test", api_base=server.url, api_key="sk-test", cache=False)
        for g in groups[:2]:
            judge.score_group_sync(g)
    return groups


@pytest.fixture(scope="session")
def sample_jsonl(sample_groups: list[TrajectoryGroup], tmp_path_factory: Any) -> Path:
    path = tmp_path_factory.mktemp("viewer") / "eval.jsonl"
    write_jsonl(path, sample_groups)
    return path


def big_lines(sample_groups: list[TrajectoryGroup], n: int) -> Iterator[str]:
    """JSON lines of groups of 8 copies of the sample trajectories, ``n`` trajectories in all."""
    trajs = [t.model_dump(mode="json") for g in sample_groups for t in g]
    made = 0
    gid = 0
    while made < n:
        size = min(8, n - made)
        members = []
        for j in range(size):
            t = copy.deepcopy(trajs[(gid * 8 + j) % len(trajs)])
            t.update(seed=gid, group_index=j, reward=((gid * 7 + j * 3) % 11) / 10)
            members.append(t)
        group = {"env_id": members[0]["env_id"], "seed": gid, "trajectories": members}
        yield json.dumps(group)
        made += size
        gid += 1


@pytest.fixture(scope="session")
def big_jsonl(sample_groups: list[TrajectoryGroup], tmp_path_factory: Any) -> Path:
    """10,000 trajectories in groups of 8."""
    path = tmp_path_factory.mktemp("viewer-big") / "big.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for line in big_lines(sample_groups, 10_000):
            f.write(line + "\n")
    return path
