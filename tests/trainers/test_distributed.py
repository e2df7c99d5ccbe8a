"""The multi-process path (what ``accelerate launch`` runs on GPUs), on CPU with 2 processes.

``accelerate launch --multi_gpu`` starts its processes through torch.distributed's launcher;
on a CPU-only machine the same code path (process group, DDP gradient sync, per-process groups,
rank-0 run folder) is exercised by launching with ``torch.distributed.run`` and gloo.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from envkit.trainers.run_dir import RunDir

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from train_support import run_two_processes  # noqa: E402


@pytest.mark.slow
def test_two_processes_train_in_sync(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_two_processes(HERE / "train_support.py", "--ddp", str(out), timeout=600)
    fingerprints = [(tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert fingerprints[0] == fingerprints[1]  # same steps, identical LoRA weights on both ranks
    assert fingerprints[0][0] == "2"
    run = RunDir(out)
    assert [r["step"] for r in run.read_metrics()] == [1, 2]
    assert json.loads(run.run_info_path.read_text())["world_size"] == 2
    # Each process played its own task of the step (groups_per_step=2 -> one group per rank).
    seeds = {
        path.name: json.loads(path.read_text().splitlines()[0])["seed"]
        for path in sorted(run.trajectories_dir.iterdir())
    }
    assert seeds == {
        "step-000001.jsonl": 0,
        "step-000001.rank1.jsonl": 1,
        "step-000002.jsonl": 2,
        "step-000002.rank1.jsonl": 3,
    }
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
