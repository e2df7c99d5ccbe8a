"""The multi-GPU recipe of docs/scaling.md, run as written with ``accelerate launch``.

``accelerate launch --multi_gpu --num_processes N -m envkit.cli train ...`` is the documented way to
train one LoRA adapter data-parallel on several GPUs. On this CPU machine the very same command
starts two gloo processes (accelerate's ``MULTI_CPU``), which exercises everything the recipe
relies on: per-process groups, TRL's gathered advantages, DDP gradient averaging and the rank-0
run folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from envkit.trainers.run_dir import RunDir


@pytest.mark.slow
def test_accelerate_launch_multi_process_recipe(tmp_path: Path) -> None:
    launcher = shutil.which("accelerate")
    assert launcher is not None, "accelerate's launcher is installed with the train extra"
    out = tmp_path / "run"
    command = [
        launcher,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "envkit.cli",
        "train",
        "Arithmetic-v0",
        "--model",
        "tiny-random",
        "--device",
        "cpu",
        "-k",
        "operators=+",
        "-k",
        "max_turns=1",
        "--steps",
        "2",
        "--groups-per-step",
        "2",
        "--group-size",
        "2",
        "--max-new-tokens",
        "4",
        "--set",
        "torch_threads=1",
        "--set",
        "progress=false",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-4000:])
    run = RunDir(out)
    assert [r["step"] for r in run.read_metrics()] == [1, 2]
    assert json.loads(run.run_info_path.read_text())["world_size"] == 2
    # Each of the two processes played one group of each step and wrote its own file.
    names = sorted(p.name for p in run.trajectories_dir.iterdir())
    assert names == [
        "step-000001.jsonl",
        "step-000001.rank1.jsonl",
        "step-000002.jsonl",
        "step-000002.rank1.jsonl",
    ]
    seeds = {
        name: json.loads((run.trajectories_dir / name).read_text().splitlines()[0])["seed"]
        for name in names
    }
    assert len(set(seeds.values())) == 4  # four different tasks: no group was played twice
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
