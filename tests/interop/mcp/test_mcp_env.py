"""MCPEnv: registered MCP envs through gymnasium.make, env.step, collect, envkit check and the
RULER judge, against a real FastMCP server over stdio and streamable HTTP."""

from __future__ import annotations

import json
import uuid
from typing import Any

import gymnasium as gym
import pytest
from mcp_support import server_processes, stdio_server, wait_no_server_processes

import envkit
from envkit.checks import run_checks
from envkit.environments.mcp import MCPEnv, MCPServer, register_mcp_env
from envkit.policies import CallablePolicy
from envkit.rewards import score_groups
from envkit.testing import ScriptedOpenAIServer, ruler_responder
from envkit.types import Trajectory

TASKS = ["Store a token, read it back, count to two and report both.", {"prompt": "Again."}]


def _call(name: str, args: dict[str, Any], id: str) -> dict[str, Any]:
    return {"id": id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def kv_policy(messages: list[dict[str, Any]], tools: Any) -> Any:
    """Puts a fresh token and counts (turn 1), reads it back and counts (turn 2), answers."""
    results = [m["content"] for m in messages if m["role"] == "tool"]
    if not results:
        token = uuid.uuid4().hex
        calls = [_call("put", {"key": "me", "value": token}, "a"), _call("incr", {}, "b")]
        return {"role": "assistant", "content": None, "tool_calls": calls}
    if len(results) == 2:
        calls = [_call("get", {"key": "me"}, "c"), _call("incr", {}, "d")]
        return {"role": "assistant", "content": None, "tool_calls": calls}
    return f"token={results[2]} count={results[3]}"


def kv_reward(trajectory: Trajectory) -> float:
    """1.0 when the episode read back its own token and its counter reached 2."""
    token = json.loads(trajectory.messages[1].tool_calls[0].function.arguments)["value"]
    return float(trajectory.messages[-1].content == f"token={token} count=2")


def test_32_concurrent_episodes_through_collect_keep_their_own_sessions(http_url: str) -> None:
    fid = register_mcp_env(
        "McpKV-v0",
        server=MCPServer(url=http_url, mode="legacy"),
        tasks=TASKS,
        reward=kv_reward,
        max_turns=4,
        override=True,
    )
    groups = envkit.collect(
        fid, CallablePolicy(kv_policy), seeds=range(8), group_size=4, concurrency=32, progress=False
    )
    trajs = [t for g in groups for t in g]
    assert len(trajs) == 32
    assert [t.outcome for t in trajs] == ["ok"] * 32
    assert [t.reward for t in trajs] == [1.0] * 32  # no episode saw another's token or counter
    tokens = {json.loads(t.messages[1].tool_calls[0].function.arguments)["value"] for t in trajs}
    assert len(tokens) == 32
    assert [m.role for m in trajs[0].messages] == ["user"] + ["assistant", "tool", "tool"] * 2 + [
        "assistant"
    ]


def test_stdio_env_through_gymnasium_make_has_a_fresh_server_per_episode() -> None:
    fid = register_mcp_env(
        "McpCounter-v0",
        server=stdio_server(),
        tasks=["Count to one."],
        reward=lambda trajectory: float(trajectory.messages[-1].content == "1"),
        override=True,
    )
    env = gym.make(fid)
    pids = []
    try:
        names = [t["function"]["name"] for t in env.unwrapped.tool_schemas]
        assert {"incr", "put", "get", "pid", "hang", "crash", "picture"} == set(names)
        for _ in range(2):  # each episode has a fresh server: the counter starts at 0 again
            obs, info = env.reset(seed=0)
            assert obs[-1]["content"] == "Count to one." and info["task_id"] == "task-0"
            calls = [_call("incr", {}, "x"), _call("pid", {}, "y")]
            obs, reward, terminated, truncated, info = env.step(
                {"role": "assistant", "content": None, "tool_calls": calls}
            )
            assert obs[-2] == {"role": "tool", "tool_call_id": "x", "name": "incr", "content": "1"}
            assert (reward, terminated, truncated, info["tool_calls"]) == (0.0, False, False, 2)
            pids.append(int(obs[-1]["content"]))
            assert [p.pid for p in server_processes()] == [pids[-1]]  # the last one was stopped
            obs, reward, terminated, truncated, info = env.step("1")
            assert (reward, terminated, truncated, info["score"]) == (1.0, True, False, 1.0)
            assert wait_no_server_processes() == []  # the episode's end stopped its server
    finally:
        env.close()
    assert pids[0] != pids[1]
    assert server_processes() == []


def test_max_turns_truncates_and_scores_and_a_hang_does_not_stop_the_batch(http_url: str) -> None:
    def policy(messages: list[dict[str, Any]], tools: Any) -> Any:
        hang = "hang" in messages[0]["content"]
        return {"role": "assistant", "tool_calls": [_call("hang" if hang else "incr", {}, "h")]}

    env_kwargs = {"max_turns": 2, "reward": lambda trajectory: 0.5}
    server = MCPServer(url=http_url, mode="legacy", call_timeout=1.0)
    groups = envkit.collect(
        lambda **kw: MCPEnv(server, ["please hang", "please count"], **kw),
        CallablePolicy(policy),
        seeds=[0],
        group_size=1,
        options={"index": 0},
        env_kwargs=env_kwargs,
        progress=False,
    )
    t = groups[0][0]
    assert t.outcome == "truncated" and t.reward == 0.5
    assert t.messages[2].content == "Error: hang did not finish within 1.0 s; its result is lost."
    assert t.info["tool_timeouts"] == 1


def test_crash_mid_call_is_an_infra_error_and_the_batch_goes_on() -> None:
    first_call = [True]

    def policy(messages: list[dict[str, Any]], tools: Any) -> Any:
        if any(m["role"] == "tool" for m in messages):
            return "done"
        name = "crash" if first_call[0] else "incr"  # the first episode to act crashes its server
        first_call[0] = False
        return {"role": "assistant", "tool_calls": [_call(name, {}, "k")]}

    server = stdio_server(on_crash="infra_error")
    groups = envkit.collect(
        lambda **kw: MCPEnv(server, ["go"], reward=lambda trajectory: 1.0, **kw),
        CallablePolicy(policy),
        seeds=[0],
        group_size=2,
        progress=False,
    )
    by_call = {t.messages[1].tool_calls[0].function.name: t for t in groups[0]}
    crashed, counted = by_call["crash"], by_call["incr"]
    assert crashed.outcome == "infra_error" and crashed.reward is None
    assert "crashed or exited" in (crashed.error or "")
    assert counted.outcome == "ok" and counted.reward == 1.0
    assert counted.messages[2].content == "1"
    assert wait_no_server_processes() == []


def test_a_shared_server_serves_concurrent_episodes_and_stops_with_the_last_env() -> None:
    def policy(messages: list[dict[str, Any]], tools: Any) -> Any:
        results = [m["content"] for m in messages if m["role"] == "tool"]
        if results:
            return ",".join(results)
        calls = [_call("shared_incr", {}, "i"), _call("shared_pid", {}, "p")]
        return {"role": "assistant", "tool_calls": calls}

    server = stdio_server(per_episode=False, prefix="shared")
    groups = envkit.collect(
        lambda **kw: MCPEnv(server, ["count"], reward=lambda trajectory: 1.0, **kw),
        CallablePolicy(policy),
        seeds=[0],
        group_size=16,
        concurrency=16,
        progress=False,
    )
    answers = [t.messages[-1].content.split(",") for t in groups[0]]
    assert sorted(int(a[0]) for a in answers) == list(range(1, 17))  # one state, no lost update
    assert len({a[1] for a in answers}) == 1  # one server process for all episodes
    assert [t.outcome for t in groups[0]] == ["ok"] * 16
    assert wait_no_server_processes() == []  # the last env's close stopped it


def test_mcp_env_with_the_ruler_judge(http_url: str, openai_server: ScriptedOpenAIServer) -> None:
    openai_server.responder = ruler_responder(lambda text: 1.0 if "count=2" in text else 0.2)
    answers = iter(["count=2", "count=1", "count=2"])

    def policy(messages: list[dict[str, Any]], tools: Any) -> Any:
        if any(m["role"] == "tool" for m in messages):
            return next(answers)
        return {"role": "assistant", "tool_calls": [_call("incr", {}, "i")]}

    judge_options = {
        "api_base": openai_server.url,
        "api_key": "test",
        "cache": False,
        "timeout_s": 5.0,
        "backoff_s": 0.001,
    }
    fid = register_mcp_env(
        "McpJudged-v0",
        server=MCPServer(url=http_url, mode="legacy"),
        tasks=["Count."],
        judge_model="openai/judge-test",
        judge_options=judge_options,
        override=True,
    )
    groups = envkit.collect(fid, CallablePolicy(policy), seeds=[0], group_size=3, progress=False)
    assert [t.reward for t in groups[0]] == [0.0, 0.0, 0.0]  # pending: the judge scores groups
    assert groups[0][0].info["scored_by"] == "judge"
    env = envkit.make(fid)
    try:
        judge = env.unwrapped.group_reward
        assert type(judge).__name__ == "RulerJudge" and judge.model == "openai/judge-test"
    finally:
        env.close()
    report = score_groups(groups, judge)
    assert report.judge_errors == 0 and len(openai_server.requests) == 1
    rewards = {t.messages[-1].content: t.reward for t in groups[0]}
    assert rewards == {"count=2": 1.0, "count=1": 0.2}


def test_no_reward_and_no_judge_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENVKIT_JUDGE_MODEL", raising=False)
    with pytest.raises(ValueError, match="MCPEnv needs a reward"):
        register_mcp_env("McpNoReward-v0", server=stdio_server(), tasks=["x"], override=True)
    with pytest.raises(ValueError, match="non-empty list of prompts"):
        register_mcp_env("McpNoTasks-v0", server=stdio_server(), tasks=[], reward=lambda t: 0.0)


def test_envkit_check_passes_on_a_registered_mcp_env(http_url: str) -> None:
    fid = register_mcp_env(
        "McpChecked-v0",
        server=MCPServer(url=http_url, mode="legacy"),
        tasks=TASKS,
        reward=lambda trajectory: 0.0,
        override=True,
    )
    results = run_checks(fid, seeds=[0, 1])
    assert [(r.name, r.detail) for r in results if not r.passed] == []
