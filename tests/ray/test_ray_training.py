"""``envkit train --rollout-backend ray``: the whole decoupled loop on a two-node cluster.

A separate ``envkit serve`` process samples, Ray workers on both nodes of the cluster play the
episodes (policy calls go to the server), and the trainer pushes its adapter to the server after
every optimizer step. The trainer runs as the CLI in its own process and joins the cluster by
``--ray-address``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from ray_support import Cluster

from envkit.ray_rollout import RAY_METRIC_NODE
from envkit.trainers.run_dir import RunDir
from envkit.types import TrajectoryGroup

pytestmark = pytest.mark.ray


@pytest.mark.slow
def test_train_two_steps_with_ray_workers_and_a_policy_server(
    cluster: Cluster, tmp_path: Path
) -> None:
    import ray

    from envkit.models import load_model
    from envkit.serving import ServerProcess

    model_dir = tmp_path / "model"
    model, tok = load_model("tiny-random")
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    out = tmp_path / "run"
    with ServerProcess(str(model_dir), args=["--seed", "0"]) as server:
        command = [
            sys.executable, "-m", "envkit.cli", "train", "Arithmetic-v0",
            "--model", str(model_dir), "--device", "cpu",
            "-k", "operators=+", "-k", "max_turns=1",
            "--steps", "2", "--groups-per-step", "2", "--group-size", "2",
            "--max-new-tokens", "4", "--set", "torch_threads=1", "--set", "progress=false",
            "--policy-server", server.url,
            "--rollout-backend", "ray", "--ray-address", cluster.address,
            "--out", str(out),
        ]  # fmt: skip
        proc = subprocess.run(
            command, env=cluster.env, capture_output=True, text=True, timeout=900, check=False
        )
        assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-5000:])
        with urllib.request.urlopen(server.url + "/v1/models", timeout=30) as response:
            served = {m["id"] for m in json.load(response)["data"]}
    run = RunDir(out)
    rows = [r for r in run.read_metrics() if r["kind"] == "train"]
    assert [r["step"] for r in rows] == [1, 2]
    # The adapter trained in step 1 was pushed to the server before step 2's episodes.
    assert (out / "server_adapters" / "v000001" / "adapter_config.json").is_file()
    assert len(served) >= 2, served  # the base model and the adapter it samples with now
    nodes = set()
    for step in (1, 2):
        for line in run.trajectories_path(step).read_text().splitlines():
            for traj in TrajectoryGroup.model_validate_json(line).trajectories:
                assert traj.outcome != "infra_error", traj.error
                assert traj.completions and traj.completions[0].logprobs
                nodes.add(traj.metrics[RAY_METRIC_NODE])
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert nodes == alive and len(nodes) == 2  # episodes ran on both nodes
