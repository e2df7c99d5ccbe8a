"""Agent envs (``envkit.AgentEnv``) on the Ray backend: each worker runs its own gateway.

The policy is a ``ServerPolicy`` on ``envkit serve``'s app (the tiny random model, served from
this process on 127.0.0.1), so every call an agent makes on a worker comes back with its token
ids. Checked: an agent registered at run time (a function pickled by value, an agent named by
``"module:function"``, a module the workers cannot import: refused with the fix, then sent by
value) plays on both nodes with token ids and the gateway's metrics; an agent raising on a worker
is an ``agent_error`` with its traceback; no gateway or policy thread outlives a collect; and a
two-step ``GRPOTrainer`` run with ``rollout_backend="ray"`` trains on the ids the workers'
gateways recorded.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
from ray_support import Cluster

import envkit
from envkit.environments.agent import AgentEnv
from envkit.policies import ServerPolicy
from envkit.ray_rollout import RAY_METRIC_NODE, RAY_METRIC_PID, RayRollout
from envkit.types import Trajectory, TrajectoryGroup

pytestmark = pytest.mark.ray

_AGENTS = str(Path(__file__).resolve().parents[1] / "agents")
if _AGENTS not in sys.path:  # as tests/agents/conftest.py does (the workers lack this folder)
    sys.path.insert(0, _AGENTS)

import agents_support  # noqa: E402

ROWS = [{"prompt": f"What is {i}+1?", "answer": str(i + 1), "fail": i == 2} for i in range(4)]
LEAKS = ("envkit-gateway", "envkit-server-policy")
"""Thread names of a worker's gateway and of its policy copy's HTTP pool."""


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    from envkit.models import load_model

    return load_model("tiny-random")


@pytest.fixture(scope="module")
def server_url(tiny: tuple[Any, Any]) -> Iterator[str]:
    """``envkit serve``'s app (vLLM's endpoints, runtime LoRA) over the tiny model."""
    from envkit.policies import HFPolicy
    from envkit.serving import InferenceServer

    model, tok = tiny
    with InferenceServer(HFPolicy(model, tok, seed=0), served_model_name="tiny-random") as server:
        host, port = server.address
        yield f"http://{host}:{port}"


@pytest.fixture
def policy(server_url: str, tiny: tuple[Any, Any]) -> Iterator[ServerPolicy]:
    p = ServerPolicy(
        server_url, "tiny-random", tokenizer=tiny[1], max_new_tokens=6, seed=0, max_retries=0
    )
    yield p
    p.close()


@pytest.fixture
def registered() -> Iterator[None]:
    """Removes the ids a test registers (and the by-value pickling of ``agents_support``)."""
    import ray

    before = set(gym.registry)
    yield
    for env_id in set(gym.registry) - before:
        del gym.registry[env_id]
    with contextlib.suppress(ValueError):  # not registered
        ray.cloudpickle.unregister_pickle_by_value(agents_support)


def has_digit(trajectory: Trajectory, **_: Any) -> float:
    """1.0 when the agent's answer holds a digit (the tiny model's answers are noise)."""
    return float(any(c.isdigit() for c in trajectory.info.get("submitted", "")))


def spread(trajectory: Trajectory, **_: Any) -> float:
    """A reward that never ties within a group (its episode's index), so every step learns."""
    return float(trajectory.group_index)


def check_sampled(traj: Trajectory, calls: int) -> None:
    """``traj`` is a good episode of ``calls`` linked calls, each with its ids and logprobs."""
    assert traj.outcome == "ok", traj.error
    assert len(traj.completions) == calls and traj.branches == []
    for c in traj.completions:
        assert c.token_ids and c.prompt_token_ids and len(c.logprobs or []) == len(c.token_ids)
    for before, after in zip(traj.completions, traj.completions[1:], strict=False):
        assert before.prompt_token_ids is not None and after.prompt_token_ids is not None
        assert after.prompt_token_ids[: len(before.prompt_token_ids)] == before.prompt_token_ids
    assert traj.metrics["gateway/calls"] == calls == traj.metrics["gateway/trainable_calls"]
    assert traj.metrics["gateway/branches"] == 1.0  # the calls linked into one sequence
    assert traj.metrics["agent/no_model_calls"] == 0.0
    assert traj.usage is not None
    assert traj.usage.completion_tokens == sum(len(c.token_ids or []) for c in traj.completions)


def test_an_agent_registered_at_run_time_plays_on_both_nodes_with_token_ids(
    cluster: Cluster, policy: ServerPolicy, registered: None
) -> None:
    import ray

    async def ask_twice(client: Any, task: Any) -> Any:  # a local function: pickled by value
        messages = [dict(m) for m in task.messages]
        first = await client.chat.completions.create(model="policy", messages=messages)
        messages += [
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "Answer again."},
        ]
        second = await client.chat.completions.create(model="policy", messages=messages)
        return second.choices[0].message

    env_id = envkit.register_agent(
        "RayAgentTwice-v0", agent=ask_twice, tasks=ROWS, reward=has_digit
    )
    groups = envkit.collect(
        env_id, policy, seeds=[0, 1, 3, 5], group_size=2, progress=False, backend="ray"
    )
    trajs = [t for g in groups for t in g]
    assert [g.task_id for g in groups] == ["task-0", "task-1", "task-3", "task-1"]
    for traj in trajs:
        check_sampled(traj, calls=2)
        assert traj.reward in (0.0, 1.0) and traj.reward_breakdown.keys() == {"has_digit"}
        assert [m.role for m in traj.messages] == ["user", "assistant", "user", "assistant"]
        assert traj.info["submitted"] == traj.messages[-1].content
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert {t.metrics[RAY_METRIC_NODE] for t in trajs} == alive


def test_agents_by_name_by_value_and_raising_on_a_kept_backend(
    cluster: Cluster, policy: ServerPolicy, registered: None
) -> None:
    import ray

    async def flaky(client: Any, task: Any) -> str:
        """Raises on task 2; else answers with the names of its worker's threads."""
        await client.chat.completions.create(model="policy", messages=task.messages)
        if task.info["fail"]:
            raise ValueError("the harness broke on the worker")
        return " ".join(t.name for t in threading.enumerate())

    by_name = envkit.register(
        "RayAgentByName-v0",
        entry_point=AgentEnv,
        kwargs={"agent": "envkit.environments.agent:_echo_agent", "tasks": ROWS,
                "reward": "exact_match"},
    )  # fmt: skip
    unimportable = envkit.register_agent(
        "RayAgentSupport-v0", agent=agents_support.two_call_agent, tasks=ROWS, reward=has_digit
    )
    raising = envkit.register_agent("RayAgentFlaky-v0", agent=flaky, tasks=ROWS, reward=has_digit)
    with RayRollout() as backend:
        # the agent's string travels and each worker imports it (an installed package)
        named = backend.collect(by_name, policy, seeds=[0, 1], group_size=2)
        for traj in (t for g in named for t in g):
            check_sampled(traj, calls=1)
        # agents_support is on this process's sys.path only: refused with the fix
        with pytest.raises(RuntimeError, match=r"No module named 'agents_support'.*by value"):
            backend.collect(unimportable, policy, seeds=[0], group_size=1)
        ray.cloudpickle.register_pickle_by_value(agents_support)
        sent = backend.collect(unimportable, policy, seeds=[0, 1], group_size=2)
        for traj in (t for g in sent for t in g):
            check_sampled(traj, calls=2)
            assert traj.messages[2].content == agents_support.VERDICT
        mixed = backend.collect(raising, policy, seeds=[0, 1, 2, 3], group_size=2)
        states = backend.worker_threads()
    pids = {s["pid"] for s in states}
    for group in mixed:
        for traj in group:
            assert traj.metrics[RAY_METRIC_PID] in pids
            if group.seed == 2:
                assert traj.outcome == "agent_error" and traj.reward is None
                assert "ValueError in the agent: the harness broke on the worker" in traj.error
                assert "Traceback (most recent call last)" in traj.error
                assert traj.completions[0].token_ids  # the call it made is kept
            else:
                assert traj.outcome == "ok", traj.error
                # while it played, its worker ran the gateway and the policy's HTTP threads
                assert all(name in traj.info["submitted"] for name in LEAKS)
    for state in states:  # after the collects none of them is left on the workers
        assert state["open_runs"] == 0
        assert not [n for n in state["threads"] if n.startswith(LEAKS)], state


@pytest.mark.slow
def test_grpo_trains_an_agent_env_on_the_ids_recorded_by_the_workers(
    cluster: Cluster, server_url: str, tmp_path: Path, registered: None
) -> None:
    import ray
    import torch

    from envkit.trainers import GRPOConfig, GRPOTrainer
    from envkit.trainers.batch import loss_mask
    from envkit.trainers.run_dir import RunDir

    ray.cloudpickle.register_pickle_by_value(agents_support)
    env_id = envkit.register_agent(
        "RayAgentTrain-v0", agent="agents_support:two_call_agent", tasks=ROWS, reward=spread
    )
    out = tmp_path / "run"
    cfg = GRPOConfig(
        output_dir=str(out),
        max_steps=2,
        save_steps=10,
        group_size=2,
        groups_per_step=2,
        max_new_tokens=5,
        concurrency=4,
        kl_to_base_every=0,
        progress=False,
        learning_rate=0.05,
        policy_server=server_url,
        policy_server_model="tiny-random",
        rollout_backend="ray",
    )
    threads = torch.get_num_threads()
    batches: list[dict[str, Any]] = []
    try:
        with GRPOTrainer("tiny-random", env_id, config=cfg) as trainer:
            original = trainer.backend._generate_and_score_completions

            def capture(inputs: list[dict[str, Any]]) -> dict[str, Any]:
                batch = original(inputs)
                batches.append(dict(batch))
                return batch

            trainer.backend._generate_and_score_completions = capture  # type: ignore[method-assign]
            result = trainer.train()
            assert trainer.episodes.agent_gateway.gateway is None  # the workers' gateways sampled
    finally:
        torch.set_num_threads(threads)
    assert result.steps == 2 and len(batches) == 2
    assert (out / "server_adapters" / "v000001" / "adapter_config.json").is_file()
    run = RunDir(out)
    rows = [r for r in run.read_metrics() if r["kind"] == "train"]
    assert [r["gateway/calls"] for r in rows] == [8.0, 8.0]  # 4 episodes x 2 calls
    assert all(r["agent/no_model_calls"] == 0.0 for r in rows)
    nodes = set()
    for step, batch in enumerate(batches, start=1):
        lines = run.trajectories_path(step).read_text().splitlines()
        trajs = [t for line in lines for t in TrajectoryGroup.model_validate_json(line)]
        # every loss token is one a worker's gateway recorded as sampled, and vice versa
        masks = loss_mask(batch).tolist()
        for ids, mask, traj in zip(batch["completion_ids"].tolist(), masks, trajs, strict=True):
            check_sampled(traj, calls=2)
            sampled = [t for c in traj.completions for t in c.token_ids or []]
            assert [t for t, m in zip(ids, mask, strict=True) if m] == sampled
            assert traj.metrics["behaviour_version"] == step - 1
            nodes.add(traj.metrics[RAY_METRIC_NODE])
    assert len(nodes) == 2
