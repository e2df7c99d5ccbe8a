"""The Ray backend as an object (``RayRollout``), envs registered at run time, seed streams."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
import ray_support
from ray_support import Cluster, CountEnv

import envkit
from envkit.environments import register_dataset
from envkit.policies import CallablePolicy, ServerPolicy
from envkit.ray_rollout import RAY_METRIC_NODE, RAY_METRIC_PID, RayRollout

pytestmark = pytest.mark.ray

ROWS = [{"prompt": f"Say {n}.", "answer": str(n)} for n in range(6)]


def strip(groups: list[Any]) -> list[Any]:
    out = []
    for g in groups:
        for t in g:
            d = t.model_dump(exclude={"timings"})
            d["metrics"] = {
                k: v for k, v in d["metrics"].items() if k not in (RAY_METRIC_NODE, RAY_METRIC_PID)
            }
            out.append(d)
    return out


def test_env_registered_at_run_time_plays_on_the_workers_as_locally(cluster: Cluster) -> None:
    # The workers never imported this registration: before, NameNotFound from every worker.
    env_id = register_dataset("H4RunTimeRows-v0", ROWS, override=True)
    policy = CallablePolicy(ray_support.say_number)
    seeds = [0, 1, 2, 3]
    local = envkit.collect(env_id, policy, seeds=seeds, group_size=2, progress=False)
    on_ray = envkit.collect(
        env_id, policy, seeds=seeds, group_size=2, concurrency=4, progress=False, backend="ray"
    )
    import ray

    assert {t.outcome for g in local for t in g} <= {"ok", "truncated"}
    assert {t.reward for g in local for t in g} == {0.0, 1.0}
    assert strip(on_ray) == strip(local)
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert {t.metrics[RAY_METRIC_NODE] for g in on_ray for t in g} == alive


def test_env_class_registered_in_a_scripts_main_plays_on_the_workers(cluster: Cluster) -> None:
    code = f"""
import json
import envkit
from envkit import ChatEnv, Feedback, Task
from envkit.policies import CallablePolicy


class Reverse(ChatEnv):
    def make_task(self, options):
        word = ["apple", "river", "stone"][int(self.np_random.integers(3))]
        return Task(messages=[{{"role": "user", "content": word}}], answer=word[::-1])

    def respond(self, message):
        return Feedback(reward=float(message.content == self.task.answer), done=True)


envkit.register("H4Reverse-v0", entry_point=Reverse)
policy = CallablePolicy(lambda messages, tools: messages[-1]["content"][::-1])
groups = envkit.collect("H4Reverse-v0", policy, seeds=[0, 1, 2], group_size=2, progress=False,
                        backend="ray", ray_address={cluster.address!r})
print(json.dumps([[t.outcome, t.reward] for g in groups for t in g]))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], env=cluster.env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [["ok", 1.0]] * 6


def test_two_collects_through_one_backend_reuse_the_actors(cluster: Cluster) -> None:
    policy = CallablePolicy(ray_support.half_right)
    with RayRollout(workers_per_node=2) as backend:
        t0 = time.perf_counter()
        first = backend.collect(CountEnv, policy, seeds=list(range(8)), group_size=2)
        t1 = time.perf_counter()
        actors = backend.actor_infos
        second = backend.collect(CountEnv, policy, seeds=list(range(8, 16)), group_size=2)
        t2 = time.perf_counter()
        assert backend.actor_infos == actors and len(actors) == 4  # 2 nodes x 2
        pids = {a["pid"] for a in actors}
        assert {t.metrics[RAY_METRIC_PID] for g in first + second for t in g} <= pids
        assert {t.metrics[RAY_METRIC_PID] for g in second for t in g} == pids
    # The first collect started 4 worker processes; the second only played.
    assert t2 - t1 < t1 - t0, (t1 - t0, t2 - t1)
    import ray

    assert ray.is_initialized()  # the caller's connection is left as it was


def test_server_policy_copies_on_the_actors_send_distinct_seeds(cluster: Cluster) -> None:
    from fake_vllm import FakeVLLM  # here: the workers import this module, not tests/

    with FakeVLLM() as server:
        policy = ServerPolicy(server.url, "base", seed=3, max_retries=0)
        with RayRollout(workers_per_node=2) as backend:
            for _ in range(2):  # a second collect must not repeat the first one's seeds
                groups = backend.collect(
                    CountEnv, policy, seeds=list(range(8)), group_size=4, concurrency=32
                )
                assert {t.outcome for g in groups for t in g} <= {"ok", "truncated"}
        seeds = [r["seed"] for r in server.requests]
    assert len(seeds) >= 2 * 8 * 4
    assert len(set(seeds)) == len(seeds), "two requests were sent with the same seed"


def test_bad_backend_arguments() -> None:
    with pytest.raises(ValueError, match="workers_per_node must be an int >= 1"):
        RayRollout(workers_per_node=0)
    with pytest.raises(ValueError, match="max_retries must be an int >= 0"):
        RayRollout(max_retries=-1)
    backend = RayRollout()
    backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        backend.start()
