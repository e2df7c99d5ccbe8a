"""``collect(..., backend="ray")`` on a real two-node Ray cluster on this host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import docker
import pytest
import ray_support
from ray_support import Cluster, CountEnv

import envkit
from envkit._async import run_sync
from envkit.policies import CallablePolicy
from envkit.ray_rollout import RAY_METRIC_NODE, RAY_METRIC_PID, acollect_ray
from envkit.types import TrajectoryGroup, read_jsonl

pytestmark = pytest.mark.ray

RAY_KEYS = (RAY_METRIC_NODE, RAY_METRIC_PID)


def comparable(groups: list[TrajectoryGroup]) -> list[Any]:
    """What must not depend on the backend: everything but timings and where it ran."""
    out = []
    for g in groups:
        for t in g:
            d = t.model_dump(exclude={"timings"})
            d["metrics"] = {k: v for k, v in d["metrics"].items() if k not in RAY_KEYS}
            out.append((g.seed, g.task_id, d))
    return out


def worker_containers(client: Any) -> list[Any]:
    """This run's sandbox containers made by other processes than this one (the Ray workers).

    Sandboxes of this test process itself (process-wide pools of earlier tests in the same
    session, closed at session end) are not the workers' and are left out.
    """
    run = os.environ["ENVKIT_SANDBOX_RUN_ID"]
    found = client.containers.list(
        all=True, filters={"label": ["envkit.sandbox", f"envkit.run_id={run}"]}
    )
    return [c for c in found if c.labels.get("envkit.owner_pid") != str(os.getpid())]


def node_ids() -> set[str]:
    import ray

    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


@pytest.mark.parametrize(
    ("env", "policy_fn", "group_size"),
    [
        (CountEnv, ray_support.half_right, 3),
        ("Arithmetic-v0", ray_support.arithmetic_solver, 2),
    ],
    ids=["factory", "registered-id"],
)
def test_same_results_as_local_backend_and_both_nodes_used(
    cluster: Cluster, env: Any, policy_fn: Any, group_size: int, tmp_path: Path
) -> None:
    seeds = [3, 1, 4, 1, 5, 9, 2, 6]
    policy = CallablePolicy(policy_fn)
    local = envkit.collect(env, policy, seeds=seeds, group_size=group_size, progress=False)
    on_ray = envkit.collect(
        env,
        policy,
        seeds=seeds,
        group_size=group_size,
        concurrency=4,
        progress=False,
        backend="ray",
        jsonl_path=tmp_path / "groups.jsonl",
    )
    assert [g.seed for g in on_ray] == seeds
    assert comparable(on_ray) == comparable(local)
    outcomes = {t.outcome for g in on_ray for t in g}
    rewards = {t.reward for g in on_ray for t in g}
    assert outcomes <= {"ok", "truncated"} and rewards == {0.0, 1.0}  # the policy is half right
    ran_on = {t.metrics[RAY_METRIC_NODE] for g in on_ray for t in g}
    assert ran_on == node_ids() and len(ran_on) == 2
    assert {t.metrics[RAY_METRIC_PID] for g in on_ray for t in g}.isdisjoint({os.getpid()})
    streamed = read_jsonl(tmp_path / "groups.jsonl", TrajectoryGroup)
    assert sorted(comparable(streamed), key=json.dumps) == sorted(
        comparable(on_ray), key=json.dumps
    )


@pytest.mark.parametrize("max_retries", [0, 1])
def test_killed_worker_gives_infra_errors_and_the_batch_goes_on(
    cluster: Cluster, tmp_path: Path, max_retries: int
) -> None:
    """SIGKILL one of the two actors while all episodes block in a step: its groups become
    ``infra_error`` (or, with ``max_retries=1``, are played again on the other actor)."""
    seeds = list(range(8))
    block = (0, 1, 2, 3, 4, 5, 6, 7)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["groups"] = run_sync(
                acollect_ray(
                    ray_support.BlockingEnv,
                    CallablePolicy(ray_support.half_right),
                    seeds=seeds,
                    group_size=2,
                    concurrency=64,  # every group in flight at once: 2 actors x 16 episode slots
                    env_kwargs={"marker_dir": str(tmp_path), "block_seeds": block},
                    max_retries=max_retries,
                )
            )
        except BaseException as e:  # surfaced by the assert below
            result["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    pids: set[int] = set()
    while len(pids) < 2 and time.monotonic() < deadline:
        pids = {int(p.name.split("-")[0]) for p in tmp_path.iterdir() if p.name != "release"}
        time.sleep(0.1)
    assert len(pids) == 2, f"episodes did not start on two workers: {pids}"
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)
    time.sleep(1.0)
    (tmp_path / "release").touch()
    thread.join(timeout=180)
    assert not thread.is_alive() and "error" not in result, result.get("error")
    groups: list[TrajectoryGroup] = result["groups"]
    assert [g.seed for g in groups] == seeds and all(len(g) == 2 for g in groups)
    trajs = [t for g in groups for t in g]
    lost = [t for t in trajs if t.outcome == "infra_error"]
    fine = [t for t in trajs if t.outcome != "infra_error"]
    assert {t.outcome for t in fine} <= {"ok", "truncated"}
    if max_retries:
        assert lost == [] and all(t.metrics[RAY_METRIC_PID] != victim for t in trajs)
        return
    assert lost and fine
    assert all(t.metrics[RAY_METRIC_PID] == victim for t in lost)
    assert all(t.metrics[RAY_METRIC_PID] != victim for t in fine)
    assert all(t.reward is None and "Ray worker" in (t.error or "") for t in lost)
    assert all("ActorDiedError" in (t.error or "") or "RayActorError" in t.error for t in lost)


@pytest.mark.docker
def test_sandboxed_env_on_both_nodes_leaves_no_container(cluster: Cluster) -> None:
    seeds = list(range(6))
    groups = envkit.collect(
        "PythonTools-v0",
        CallablePolicy(ray_support.sandbox_probe),
        seeds=seeds,
        group_size=2,
        concurrency=4,
        progress=False,
        backend="ray",
    )
    trajs = [t for g in groups for t in g]
    assert {t.outcome for t in trajs} == {"ok"}, {t.error for t in trajs}
    # The tool ran in a sandbox: ``ls /work | wc -l`` printed the count of generated entries.
    tool_outputs = [m.content for t in trajs for m in t.messages if m.role == "tool"]
    assert len(tool_outputs) == len(trajs)
    assert all(o.startswith("exit code 0") and int(o.split()[-1]) >= 1 for o in tool_outputs)
    assert {t.metrics[RAY_METRIC_NODE] for t in trajs} == node_ids()
    left = worker_containers(docker.from_env())
    assert left == [], [c.name for c in left]


@pytest.mark.docker
def test_killed_worker_containers_are_reaped(cluster: Cluster, tmp_path: Path) -> None:
    """A worker SIGKILLed while its episodes hold sandboxes: no container of the run is left."""
    result: dict[str, Any] = {}
    marker = tmp_path / "pids"
    marker.mkdir()

    def run() -> None:
        result["groups"] = envkit.collect(
            "PythonTools-v0",
            CallablePolicy(ray_support.WaitingProbe(str(marker))),
            seeds=list(range(4)),
            group_size=2,
            concurrency=8,
            progress=False,
            backend="ray",
        )

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    pids: set[int] = set()
    while len(pids) < 2 and time.monotonic() < deadline:
        pids = {int(p.name.split("-")[0]) for p in marker.iterdir() if p.name != "release"}
        time.sleep(0.1)
    assert len(pids) == 2, pids
    victim = min(pids)
    client = docker.from_env()
    run_id = os.environ["ENVKIT_SANDBOX_RUN_ID"]
    owned = client.containers.list(
        all=True,
        filters={"label": [f"envkit.run_id={run_id}", f"envkit.owner_pid={victim}"]},
    )
    assert owned, "the victim held no sandbox"
    os.kill(victim, signal.SIGKILL)
    (marker / "release").touch()
    thread.join(timeout=180)
    assert not thread.is_alive()
    trajs = [t for g in result["groups"] for t in g]
    assert {t.outcome for t in trajs} == {"ok", "infra_error"}
    left = worker_containers(client)
    assert left == [], [c.name for c in left]


def test_unpicklable_policy_is_refused(cluster: Cluster) -> None:
    lock = threading.Lock()
    policy = CallablePolicy(lambda messages, tools, lock=lock: "0")
    with pytest.raises(TypeError, match=r"cannot be pickled.*ServerPolicy"):
        envkit.collect(CountEnv, policy, seeds=[0], progress=False, backend="ray")


def test_policy_with_a_torch_model_is_refused(cluster: Cluster) -> None:
    import torch

    from envkit.policies import HFPolicy

    policy = CallablePolicy(lambda messages, tools: "0")
    policy.model = torch.nn.Linear(2, 2)  # type: ignore[attr-defined]
    hf = HFPolicy.from_pretrained("tiny-random", device="cpu")
    for p in (policy, hf):
        with pytest.raises(TypeError, match=r"torch model in memory.*ServerPolicy.*LiteLLMPolicy"):
            envkit.collect(CountEnv, p, seeds=[0], progress=False, backend="ray")


def test_bad_inputs(cluster: Cluster) -> None:
    policy = CallablePolicy(ray_support.half_right)
    with pytest.raises(ValueError, match="backend must be 'local' or 'ray'"):
        envkit.collect(CountEnv, policy, seeds=[0], progress=False, backend="dask")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only used with backend='ray'"):
        envkit.collect(CountEnv, policy, seeds=[0], progress=False, ray_address="x:1")
    with pytest.raises(gym_error()):
        envkit.collect("NoSuchEnv-v0", policy, seeds=[0], progress=False, backend="ray")
    env = CountEnv()
    with pytest.raises(TypeError, match="env id or a factory"):
        envkit.collect(env, policy, seeds=[0], progress=False, backend="ray")


def gym_error() -> type[Exception]:
    import gymnasium.error

    return gymnasium.error.Error


def run_in_fresh_process(code: str, cluster: Cluster) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**cluster.env, "ENVKIT_TEST_TOKEN": "forwarded-123"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_ray_address_connects_and_forwards_env_vars(cluster: Cluster) -> None:
    code = f"""
import json, envkit, ray_support
from envkit.policies import CallablePolicy
groups = envkit.collect(ray_support.CountEnv, CallablePolicy(ray_support.say_env_var),
                        seeds=[0, 1, 2], group_size=2, progress=False, backend="ray",
                        ray_address={cluster.address!r})
print(json.dumps([m.content for g in groups for t in g for m in t.messages[1:2]]))
"""
    answers = run_in_fresh_process(code, cluster)
    assert answers == ["forwarded-123"] * 6


def test_bad_address_says_how_to_start_a_cluster(cluster: Cluster) -> None:
    code = f"""
import json, envkit, ray_support
from envkit.policies import CallablePolicy
try:
    envkit.collect(ray_support.CountEnv, CallablePolicy(ray_support.half_right), seeds=[0],
                   progress=False, backend="ray", ray_address="127.0.0.1:{ray_support.free_port()}")
except ConnectionError as e:
    print(json.dumps(str(e)))
"""
    message = run_in_fresh_process(code, cluster)
    assert "no Ray cluster answers" in message and "ray start --head" in message


def test_server_policy_travels_and_calls_the_server_from_the_workers(
    cluster: Cluster, openai_server: Any
) -> None:
    """A ``ServerPolicy`` pickles to both nodes and its requests reach the server from there.

    The scripted server is not vLLM (no token ids), so every turn is a ``policy_error`` naming
    that: it proves the request went out from the worker and came back."""
    from envkit.policies import ServerPolicy

    groups = envkit.collect(
        CountEnv,
        ServerPolicy(openai_server.url, "m", max_retries=0),
        seeds=[0, 1, 2, 3],
        group_size=2,
        progress=False,
        backend="ray",
    )
    trajs = [t for g in groups for t in g]
    assert {t.outcome for t in trajs} == {"policy_error"}
    assert all("without token ids" in (t.error or "") for t in trajs)
    assert len(openai_server.requests) == len(trajs)
    assert {t.metrics[RAY_METRIC_NODE] for t in trajs} == node_ids()
