"""GRPO + LoRA end to end with real TRL, peft and transformers on a tiny random model.

Covers: a short run leaves a complete run folder; the adapter changed and reloads with
``PeftModel.from_pretrained`` to the same function; a run killed with SIGKILL mid-run and
resumed with ``resume=True`` reproduces the uninterrupted run step for step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from envkit.trainers import GRPOConfig
from envkit.trainers.run_dir import RunDir

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from train_support import make_trainer  # noqa: E402


@pytest.fixture(scope="module")
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory, keep_threads: None) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("full") / "run"
    trainer = make_trainer(out)
    result = trainer.train()
    state = {k: v.detach().clone() for k, v in trainer.model.named_parameters() if "lora_" in k}
    probe = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        logits = trainer.model(input_ids=probe).logits
    trainer.close()
    return {"out": out, "result": result, "lora": state, "probe": probe, "logits": logits}


def test_run_folder_is_complete(full_run: dict[str, Any]) -> None:
    run = RunDir(full_run["out"])
    assert full_run["result"].steps == 4
    rows = [r for r in run.read_metrics() if r["kind"] == "train"]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for key in (
        "loss",
        "reward/mean",
        "groups/zero_variance_frac",
        "entropy",
        "entropy/sampled_nll",
        "diversity/pairwise_similarity",
        "completion/tokens_mean",
        "clip_ratio/region_mean",
        "time/step_s",
    ):
        assert all(key in r for r in rows), key
    assert sum(1 for r in rows if "kl_to_base" in r) == 2  # every 2 steps
    assert sorted(p.name for p in run.trajectories_dir.iterdir()) == [
        f"step-00000{i}.jsonl" for i in range(1, 5)
    ]
    assert [s for s, _ in run.checkpoints()] == [2, 4]
    assert run.plot_path.read_bytes()[:4] == b"\x89PNG"
    assert GRPOConfig.from_yaml(run.config_path).max_steps == 4
    info = json.loads(run.run_info_path.read_text())
    assert info["env"] == "envkit/Arithmetic-v0" and info["model"] == "tiny-random"
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (run.adapter_dir / name).is_file()
        assert (run.checkpoints_dir / "checkpoint-2" / name).is_file()
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"):
        assert (run.checkpoints_dir / "checkpoint-2" / name).is_file()


def test_training_changed_the_adapter_and_it_reloads(full_run: dict[str, Any]) -> None:
    from peft import PeftModel

    from envkit.models import load_model

    lora_b = [v for k, v in full_run["lora"].items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b), "LoRA B is still all zeros"
    rows = RunDir(full_run["out"]).read_metrics()
    assert any(r.get("episodes/trained_frac", 0) > 0 and r["loss"] != 0 for r in rows)
    base, _ = load_model("tiny-random")
    reloaded = PeftModel.from_pretrained(base, str(RunDir(full_run["out"]).adapter_dir))
    with torch.no_grad():
        logits = reloaded(input_ids=full_run["probe"]).logits
        plain = reloaded.get_base_model()(input_ids=full_run["probe"]).logits
    torch.testing.assert_close(logits, full_run["logits"], rtol=1e-5, atol=1e-5)
    with reloaded.disable_adapter(), torch.no_grad():
        plain = reloaded(input_ids=full_run["probe"]).logits
    assert not torch.allclose(plain, logits)


def test_resume_after_kill_9_matches_uninterrupted_run(
    full_run: dict[str, Any], tmp_path: Path, keep_threads: None
) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "train_support.py"), str(out), "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "hanging").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the training subprocess did not reach step 4"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)  # kill -9 between checkpoint 2 and checkpoint 4
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]
    run = RunDir(out)
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3]  # step 3 done, no checkpoint
    assert [s for s, _ in run.checkpoints()] == [2]

    trainer = make_trainer(out)
    with pytest.raises(FileExistsError, match="resume"):
        trainer.train()
    result = trainer.train(resume=True)
    assert result.resumed_from == 2 and result.steps == 4
    lora = {k: v.detach().clone() for k, v in trainer.model.named_parameters() if "lora_" in k}
    trainer.close()

    full = RunDir(full_run["out"])
    resumed_rows = [r for r in run.read_metrics() if r["kind"] == "train"]
    assert [r["step"] for r in resumed_rows] == [1, 2, 3, 4]  # step 3 redone once, not twice
    for a, b in zip(full.read_metrics(), resumed_rows, strict=True):
        for key in ("loss", "reward/mean", "grad_norm", "entropy", "completion/tokens_mean"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), (a["step"], key)
    for step in (3, 4):
        assert _tokens(full.trajectories_path(step)) == _tokens(run.trajectories_path(step))
    assert lora.keys() == full_run["lora"].keys()
    for k, v in lora.items():
        torch.testing.assert_close(v, full_run["lora"][k], rtol=1e-5, atol=1e-6)


def _tokens(path: Path) -> list[list[list[int]]]:
    groups = [json.loads(line) for line in path.read_text().splitlines()]
    return [[c["token_ids"] for t in g["trajectories"] for c in t["completions"]] for g in groups]
