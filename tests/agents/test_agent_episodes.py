"""Agent episodes: ``collect`` on an ``AgentEnv`` runs ``openai``-SDK agents through the gateway.

The tiny random ``HFPolicy`` (one per module, behind one long-lived gateway) gives real token ids;
scripted and callable policies (each collect starting its own gateway) give deterministic
answers for the rewards and every failure outcome.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import agents_support
import gymnasium as gym
import openai
import pytest

import envkit
from envkit.chat_render import render_trajectory
from envkit.gateway import Gateway, read_session
from envkit.policies import CallablePolicy, HFPolicy, ScriptedPolicy
from envkit.rollout import acollect
from envkit.types import GenerationRequest, Message, Trajectory

ROWS = [{"prompt": f"What is {i}+1?", "answer": str(i + 1)} for i in range(8)]


@pytest.fixture(scope="module")
def agent_ids() -> Iterator[dict[str, str]]:
    """One registered agent env per agent of ``agents_support`` (scored by ``exact_match``)."""
    before = set(gym.registry)
    names = [
        "one_call_agent",
        "two_call_agent",
        "rewriting_agent",
        "dict_agent",
        "raising_agent",
        "slow_agent",
        "silent_agent",
        "wrong_model_agent",
        "catching_agent",
        "int_agent",
        "closing_agent",
        "responses_agent",
    ]
    ids = {
        name: envkit.register_agent(
            f"TestAgentEpisodes-{name.replace('_', '')}-v0",
            agent=getattr(agents_support, name),
            tasks=ROWS,
            reward="exact_match",
        )
        for name in names
    }
    yield ids
    for env_id in set(gym.registry) - before:
        del gym.registry[env_id]


@pytest.fixture(scope="module")
def policy() -> HFPolicy:
    policy = HFPolicy.from_pretrained("tiny-random", device="cpu", max_new_tokens=8, seed=0)
    policy.generate([GenerationRequest(messages=[Message(role="user", content="warm up")])])
    return policy


@pytest.fixture(scope="module")
def gateway(policy: HFPolicy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with Gateway(policy, log_dir=tmp_path_factory.mktemp("sessions")) as gw:
        with gw.open_session("warm-up") as session:  # the first call through pays for imports
            client = openai.OpenAI(base_url=session.base_url, api_key="x", max_retries=0)
            client.chat.completions.create(
                model="policy", messages=[{"role": "user", "content": "hi"}]
            )
            client.close()
        yield gw


def scripted(*turns: str) -> ScriptedPolicy:
    return ScriptedPolicy(list(turns), cycle=True)


def one(env_id: str, policy: Any, **kwargs: Any) -> Trajectory:
    """The single trajectory of a one-episode collect."""
    kwargs.setdefault("progress", False)
    return envkit.collect(env_id, policy, seeds=[0], **kwargs)[0][0]


# --------------------------------------------------------------------------- real token ids
def test_two_call_agent_trains_on_the_sampled_ids(
    agent_ids: dict[str, str], policy: HFPolicy, gateway: Gateway
) -> None:
    groups = envkit.collect(
        agent_ids["two_call_agent"], policy, seeds=[0, 1], progress=False, gateway=gateway
    )
    for traj in (g[0] for g in groups):
        assert traj.outcome == "ok", traj.error
        records = read_session(traj.info["gateway_session"])
        assert len(records) == 2 == len(traj.completions) and traj.branches == []
        assert [c.token_ids for c in traj.completions] == [r.token_ids for r in records]
        assert [c.prompt_token_ids for c in traj.completions] == [
            r.prompt_token_ids for r in records
        ]
        assert [c.logprobs for c in traj.completions] == [r.logprobs for r in records]
        # the main conversation: the agent's prompt, both answers, the checker's verdict
        assert [m.role for m in traj.messages] == ["user", "assistant", "user", "assistant"]
        assert traj.messages[2].content == agents_support.VERDICT
        assert traj.messages[-1].content == records[-1].message.content  # type: ignore[union-attr]
        assert traj.info["submitted"] == records[-1].message.content  # type: ignore[union-attr]
        seq = render_trajectory(traj, stop_token_ids=policy.stop_token_ids)
        sampled = [t for t, m in zip(seq.completion_ids, seq.mask, strict=True) if m]
        assert sampled == [t for r in records for t in r.token_ids or []]
        assert traj.metrics["gateway/calls"] == 2.0 == traj.metrics["gateway/trainable_calls"]
        assert traj.metrics["agent/no_model_calls"] == 0.0
        assert traj.usage is not None
        assert traj.usage.completion_tokens == sum(len(r.token_ids or []) for r in records)
        assert traj.reward in (0.0, 1.0) and traj.reward_breakdown.keys() == {"exact_match"}
    assert groups[0][0].task_id == "task-0" and groups[1][0].task_id == "task-1"
    assert gateway.sessions == {}  # every session closed; the gateway itself stays open


def test_a_rewritten_history_trains_as_its_own_branch(
    agent_ids: dict[str, str], policy: HFPolicy, gateway: Gateway
) -> None:
    traj = one(agent_ids["rewriting_agent"], policy, gateway=gateway)
    assert traj.outcome == "ok", traj.error
    records = read_session(traj.info["gateway_session"])
    assert traj.metrics["gateway/branches"] == 2.0
    # the main branch holds the last call (the agent's final conversation)
    assert [c.token_ids for c in traj.completions] == [records[1].token_ids]
    assert traj.messages[0].content == "Be brief."
    assert [[c.token_ids for c in b] for b in traj.branches] == [[records[0].token_ids]]
    branch = Trajectory(env_id=traj.env_id, completions=traj.branches[0])
    seq = render_trajectory(branch, stop_token_ids=policy.stop_token_ids)
    assert seq.prompt_ids == records[0].prompt_token_ids
    assert Trajectory.model_validate_json(traj.model_dump_json()) == traj


# --------------------------------------------------------------------------- concurrency
def test_many_concurrent_episodes_lose_no_record(agent_ids: dict[str, str]) -> None:
    state = {"now": 0, "most": 0, "calls": 0}

    async def answer(messages: list[dict[str, Any]], tools: Any) -> str:
        state["now"] += 1
        state["calls"] += 1
        state["most"] = max(state["most"], state["now"])
        await asyncio.sleep(0.05)
        state["now"] -= 1
        return messages[0]["content"].split()[-1]  # echoes "<i>+1?"

    groups = envkit.collect(
        agent_ids["two_call_agent"],
        CallablePolicy(answer),
        seeds=range(8),
        group_size=3,
        concurrency=32,
        progress=False,
    )
    trajs = [t for g in groups for t in g]
    assert len(trajs) == 24 and all(t.outcome == "ok" for t in trajs)
    assert state["most"] >= 16, state  # the episodes' calls really overlapped
    assert state["calls"] == 48 == sum(t.metrics["gateway/calls"] for t in trajs)
    assert len({t.info["gateway_session"] for t in trajs}) == 24
    for g in groups:
        assert [t.group_index for t in g] == [0, 1, 2]
        assert all(t.messages[0].content == f"What is {g.seed}+1?" for t in g)
        assert all(len(t.completions) == 2 for t in g)  # no token ids: every answered call


def test_an_unregistered_instance_still_runs_episodes_at_once() -> None:
    state = {"now": 0, "most": 0}

    async def answer(messages: list[dict[str, Any]], tools: Any) -> str:
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
        await asyncio.sleep(0.05)
        state["now"] -= 1
        return "1"

    env = envkit.AgentEnv(agents_support.one_call_agent, ROWS, reward="exact_match")
    groups = envkit.collect(
        env, CallablePolicy(answer), seeds=range(4), group_size=2, progress=False
    )
    assert [g.rewards for g in groups] == [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    assert state["most"] == 8  # more envs were spawned from the instance


# --------------------------------------------------------------------------- rewards
def test_rewards_from_a_registered_reward_a_callable_and_the_group(clean_registry: None) -> None:
    right = one(
        envkit.register_agent(
            "TestAgentReward-v0",
            agent=agents_support.two_call_agent,
            tasks=ROWS,
            reward="exact_match",
        ),
        scripted("5", "1"),
    )
    assert (right.outcome, right.reward, right.reference) == ("ok", 1.0, "1")
    assert right.info["submitted"] == "1" and right.reward_breakdown == {"exact_match": 1.0}

    def calls_and_answer(trajectory: Trajectory, answer: str | None = None) -> float:
        return len(trajectory.completions) + float(trajectory.info["submitted"] == answer)

    graded = one(
        envkit.register_agent(
            "TestAgentCallable-v0",
            agent=agents_support.two_call_agent,
            tasks=ROWS,
            reward=calls_and_answer,
        ),
        scripted("5", "1"),
    )
    assert graded.reward == 3.0

    judged = one(
        envkit.register_agent(
            "TestAgentJudged-v0", agent=agents_support.one_call_agent, tasks=ROWS
        ),
        scripted("1"),
    )
    assert (judged.outcome, judged.reward) == ("ok", None)
    assert judged.metrics["reward_pending"] == "ruler"

    def broken(trajectory: Trajectory) -> float:
        raise RuntimeError("reward broke")

    failed = one(
        envkit.register_agent(
            "TestAgentBrokenReward-v0",
            agent=agents_support.one_call_agent,
            tasks=ROWS,
            reward=broken,
        ),
        scripted("1"),
    )
    assert (failed.outcome, failed.reward) == ("ok", None)
    assert "reward broke" in failed.metrics["reward_errors"]["broken"]  # type: ignore[index]


def test_answers_as_message_dicts_and_sdk_messages(agent_ids: dict[str, str]) -> None:
    assert one(agent_ids["dict_agent"], scripted("1")).reward == 1.0
    assert one(agent_ids["two_call_agent"], scripted("0", "1")).reward == 1.0


def test_an_agent_on_the_responses_api(
    agent_ids: dict[str, str], policy: HFPolicy, gateway: Gateway
) -> None:
    assert one(agent_ids["responses_agent"], scripted("1")).reward == 1.0
    traj = one(agent_ids["responses_agent"], policy, gateway=gateway)
    assert traj.outcome == "ok", traj.error
    (record,) = read_session(traj.info["gateway_session"])
    assert record.api == "responses" and traj.completions[0].token_ids == record.token_ids


def test_jsonl_tasks_each_seed_once(clean_registry: None, tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps({**r, "id": f"q{i}"}) + "\n" for i, r in enumerate(ROWS)))
    env_id = envkit.register_agent(
        "TestAgentJsonl-v0",
        agent="agents_support:one_call_agent",
        tasks=path,
        reward="exact_match",
    )
    groups = envkit.collect(env_id, scripted("1", "2", "3"), seeds=range(3), progress=False)
    assert [g.task_id for g in groups] == ["q0", "q1", "q2"]
    assert [g[0].reference for g in groups] == ["1", "2", "3"]


# --------------------------------------------------------------------------- failures
def test_the_agent_raising_is_an_agent_error_with_its_traceback(
    agent_ids: dict[str, str],
) -> None:
    traj = one(agent_ids["raising_agent"], scripted("1"))
    assert traj.outcome == "agent_error" and traj.reward is None
    assert traj.error is not None
    assert traj.error.startswith("ValueError in the agent: the harness broke after the first")
    assert "Traceback (most recent call last)" in traj.error and "raising_agent" in traj.error
    assert traj.metrics["gateway/calls"] == 1.0  # the call it made is kept


def test_an_agent_past_the_timeout_is_a_timeout(agent_ids: dict[str, str]) -> None:
    traj = one(agent_ids["slow_agent"], scripted("1"), episode_timeout=0.5)
    assert traj.outcome == "timeout" and "episode_timeout=0.5" in (traj.error or "")
    assert traj.metrics["gateway/calls"] == 1.0 and traj.timings.total_s < 5


def test_no_model_call_is_an_agent_error(agent_ids: dict[str, str]) -> None:
    traj = one(agent_ids["silent_agent"], scripted("1"))
    assert traj.outcome == "agent_error"
    assert "made no model call" in (traj.error or "")
    assert traj.metrics["agent/no_model_calls"] == 1.0 and traj.metrics["gateway/calls"] == 0.0


def test_a_model_name_it_was_not_given_fails_with_404(agent_ids: dict[str, str]) -> None:
    traj = one(agent_ids["wrong_model_agent"], scripted("1"))
    assert traj.outcome == "agent_error"
    assert "NotFoundError in the agent" in (traj.error or "")
    assert "'gpt-4o' does not exist" in (traj.error or "") and "'policy'" in (traj.error or "")
    assert traj.info["untrainable_calls"][0][1].startswith("the call failed")  # type: ignore[index]


def test_the_upstream_failing_is_an_infra_error(agent_ids: dict[str, str]) -> None:
    def down(messages: Any, tools: Any) -> str:
        raise ConnectionError("model server down")

    raised = one(agent_ids["one_call_agent"], CallablePolicy(down))
    assert raised.outcome == "infra_error"
    assert "answered 502" in (raised.error or "") and "model server down" in (raised.error or "")
    caught = one(agent_ids["catching_agent"], CallablePolicy(down))  # swallowed: still infra
    assert caught.outcome == "infra_error" and caught.reward is None


def test_an_unreachable_gateway_is_an_infra_error(agent_ids: dict[str, str]) -> None:
    closed = Gateway(scripted("1")).start()
    closed.close()
    traj = one(agent_ids["one_call_agent"], scripted("1"), gateway=closed)
    assert traj.outcome == "infra_error" and "starting the gateway" in (traj.error or "")


def test_an_answer_of_the_wrong_type_is_an_agent_error(agent_ids: dict[str, str]) -> None:
    traj = one(agent_ids["int_agent"], scripted("1"))
    assert traj.outcome == "agent_error"
    assert (traj.error or "").startswith("the agent returned int (42)")


def test_agents_closing_their_client_do_not_close_the_pool(agent_ids: dict[str, str]) -> None:
    groups = envkit.collect(
        agent_ids["closing_agent"], scripted("1"), seeds=[0], group_size=3, progress=False
    )
    assert [t.outcome for t in groups[0]] == ["ok", "ok", "ok"]


# --------------------------------------------------------------------------- the gateway's life
def test_collect_starts_and_closes_its_gateway(agent_ids: dict[str, str], tmp_path: Path) -> None:
    traj = one(agent_ids["one_call_agent"], scripted("1"))
    assert not Path(traj.info["gateway_session"]).exists()  # its temp dir went with it

    out = tmp_path / "rollouts.jsonl"
    groups = envkit.collect(
        agent_ids["one_call_agent"], scripted("1"), seeds=[0, 1], progress=False, jsonl_path=out
    )
    files = sorted((tmp_path / "rollouts.sessions").glob("*.jsonl"))
    assert [Path(g[0].info["gateway_session"]) for g in groups] == [
        p for p in files if p.name.startswith(("s0-", "s1-"))
    ]
    assert len(read_session(files[0])) == 1


async def test_acollect_with_a_long_lived_gateway(agent_ids: dict[str, str]) -> None:
    with Gateway(scripted("1")) as gateway:
        for seed in (0, 1):
            groups = await acollect(
                agent_ids["one_call_agent"],
                scripted("x"),
                seeds=[seed],
                progress=False,
                gateway=gateway,
            )
            assert groups[0][0].outcome == "ok" and groups[0][0].reward == (seed == 0)
        assert gateway.in_flight == 0 and gateway.sessions == {}


def test_the_docs_example_runs(
    policy: HFPolicy, clean_registry: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/agents.md's "Agent episodes" example, with this module's tiny-random policy."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "agents.md").read_text()
    block = re.findall(r"```python\n(.*?)```", docs.split("## Agent episodes", 1)[1], re.S)[0]
    monkeypatch.setattr(HFPolicy, "from_pretrained", lambda *args, **kwargs: policy)
    namespace: dict[str, Any] = {"__name__": "docs_agents"}
    exec(compile(block, "docs/agents.md", "exec"), namespace)
    traj = namespace["traj"]
    assert traj.outcome == "ok" and traj.metrics["gateway/calls"] == 2.0
    assert len(traj.completions) + sum(len(b) for b in traj.branches) == 2
    assert [len(g) for g in namespace["groups"]] == [4, 4]
