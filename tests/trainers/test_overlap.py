"""Overlapped rollouts (``max_staleness``) with real TRL, peft and a tiny random model.

A 4-step run with ``max_staleness=1`` plays step t+1's episodes while step t trains: step 1 is
played synchronously (staleness 0), steps 2-4 by the producer with the adapter of the step
before (staleness 1, recorded per episode as ``behaviour_version``), and the loss is
importance-weighted (``is/*`` metrics; the ratio moves away from 1 once the adapter changed).
A wrong task prediction is caught and played synchronously; an error in the producer reaches
the trainer thread with its traceback; a run resumes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from envkit.trainers.run_dir import RunDir

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from train_support import make_trainer  # noqa: E402


@pytest.fixture(scope="module")
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def train_rows(out: Path) -> list[dict[str, Any]]:
    return [r for r in RunDir(out).read_metrics() if r["kind"] == "train"]


def adapter_snapshots(trainer: Any) -> dict[int, dict[str, torch.Tensor]]:
    """Registers a callback that keeps the trainable (LoRA) weights of every adapter version:
    version 0 when training begins, version ``k`` after the ``k``-th optimizer step."""
    from transformers import TrainerCallback

    versions: dict[int, dict[str, torch.Tensor]] = {}

    def keep(version: int) -> None:
        versions[version] = {
            name: p.detach().clone()
            for name, p in trainer.model.named_parameters()
            if p.requires_grad
        }

    class KeepVersions(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            keep(state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            keep(state.global_step)

    trainer.backend.add_callback(KeepVersions())
    return versions


def completion_logps(model: Any, completion: Any) -> torch.Tensor:
    """Log-probabilities (temperature 1) of a completion's sampled ids after its prompt ids."""
    prompt, sampled = list(completion.prompt_token_ids), list(completion.token_ids)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + sampled])).logits
    logits = logits[0, len(prompt) - 1 : -1].float()
    return logits.log_softmax(-1).gather(1, torch.tensor(sampled)[:, None])[:, 0]


def assert_behaviour_logprobs_match_versions(
    trainer: Any, out: Path, versions: dict[int, dict[str, torch.Tensor]]
) -> None:
    """Every episode's recorded logprobs are those of the adapter version it records as
    ``behaviour_version`` (so the frozen rollout copy really was refreshed), and episodes of
    versions > 0 are not also explained by version 0 (so the check is not vacuous)."""
    import copy

    from envkit.types import TrajectoryGroup

    model = copy.deepcopy(trainer.model).eval()
    for module in model.modules():  # TRL's instance-level forward still calls the original
        vars(module).pop("forward", None)
    params = dict(model.named_parameters())
    by_version: dict[int, list[Any]] = {}
    for step in range(1, 5):
        for line in RunDir(out).trajectories_path(step).read_text().splitlines():
            for traj in TrajectoryGroup.model_validate_json(line).trajectories:
                for c in traj.completions:
                    assert c.logprobs and c.token_ids and c.prompt_token_ids, step
                    version = traj.metrics["behaviour_version"]
                    by_version.setdefault(int(version), []).append(c)
    assert sorted(by_version) == [0, 1, 2]

    def max_diff(version: int, completions: list[Any]) -> float:
        with torch.no_grad():
            for name, value in versions[version].items():
                params[name].copy_(value)
        return max(
            float((completion_logps(model, c) - torch.tensor(c.logprobs)).abs().max())
            for c in completions
        )

    tol = 1e-4
    for version, completions in sorted(by_version.items()):
        diff = max_diff(version, completions)
        assert diff < tol, f"episodes of behaviour_version {version} differ by {diff:.3g}"
    for version in (1, 2):
        diff = max_diff(0, by_version[version])
        assert diff > 100 * tol, f"version {version} episodes also fit version 0 ({diff:.3g})"


def test_overlapped_run_records_staleness_and_importance_weights(
    tmp_path: Path, keep_threads: None
) -> None:
    out = tmp_path / "run"
    # A large learning rate, so that one update visibly moves the tiny model's distribution.
    with make_trainer(out, max_staleness=1, kl_to_base_every=0, learning_rate=0.05) as trainer:
        result = trainer.train()
        assert trainer.episodes._rollout_model is not trainer.model  # never the trained model
    assert result.steps == 4
    rows = train_rows(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["staleness/mean"] for r in rows] == [0.0, 1.0, 1.0, 1.0]
    assert [r["staleness/max"] for r in rows] == [0.0, 1.0, 1.0, 1.0]
    assert all(r["staleness/prefetch_miss"] == 0.0 for r in rows)
    for key in ("is/ratio_mean", "is/ratio_min", "is/ratio_max", "is/clipped_frac"):
        assert all(key in r for r in rows), key
    # Step 1 sampled with the weights it trains (sampling vs training numerics only); later
    # steps with the adapter one update older, so the log-probabilities differ more.
    assert rows[0]["is/logp_diff_mean"] < 0.01
    assert max(r["is/logp_diff_mean"] for r in rows[1:]) > 5 * rows[0]["is/logp_diff_mean"]
    run = RunDir(out)
    for step, version in ((1, 0), (2, 0), (3, 1), (4, 2)):
        lines = run.trajectories_path(step).read_text().splitlines()
        versions = {
            t["metrics"]["behaviour_version"]
            for line in lines
            for t in json.loads(line)["trajectories"]
        }
        assert versions == {version}, (step, versions)


def test_behaviour_logprobs_are_those_of_the_recorded_adapter_version(
    tmp_path: Path, keep_threads: None
) -> None:
    """Fails if the frozen rollout copy is not refreshed with each published adapter."""
    out = tmp_path / "run"
    with make_trainer(out, max_staleness=1, kl_to_base_every=0, learning_rate=0.05) as trainer:
        versions = adapter_snapshots(trainer)
        trainer.train()
        assert sorted(versions) == [0, 1, 2, 3, 4]
        assert_behaviour_logprobs_match_versions(trainer, out, versions)


def test_wrong_prediction_is_played_synchronously(tmp_path: Path, keep_threads: None) -> None:
    out = tmp_path / "run"
    with make_trainer(out, max_staleness=1, max_steps=3, kl_to_base_every=0) as trainer:
        tasks = trainer.episodes.dataset_tasks
        assert tasks is not None
        trainer.episodes.dataset_tasks = [(seed + 1000, env) for seed, env in tasks]
        trainer.train()
    rows = train_rows(out)
    assert [r["staleness/prefetch_miss"] for r in rows] == [0.0, 1.0, 1.0]
    assert [r["staleness/mean"] for r in rows] == [0.0, 0.0, 0.0]
    lines = RunDir(out).trajectories_path(3).read_text().splitlines()
    seeds = {json.loads(line)["seed"] for line in lines}
    assert seeds == {4, 5}  # what TRL asked for, not the mispredicted 1004, 1005


def test_producer_error_reaches_the_trainer(tmp_path: Path, keep_threads: None) -> None:
    """After step 1 the reward becomes invalid: scoring a prefetched step fails in the producer
    thread, and train() raises that error (not a hang) with the producer's frames."""
    from transformers import TrainerCallback

    class BreakReward(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            trainer.episodes.reward = "no-such-reward"

    with make_trainer(tmp_path / "run", max_staleness=1, kl_to_base_every=0) as trainer:
        trainer.backend.add_callback(BreakReward())
        with pytest.raises(KeyError, match="no reward named 'no-such-reward'") as caught:
            trainer.train()
        assert trainer.backend.state.global_step < 4
    assert "_produce" in [entry.name for entry in caught.traceback]


def test_overlapped_run_resumes(tmp_path: Path, keep_threads: None) -> None:
    out = tmp_path / "run"
    with make_trainer(out, max_staleness=1, max_steps=2, kl_to_base_every=0) as trainer:
        trainer.train()
    with make_trainer(out, max_staleness=1, max_steps=4, kl_to_base_every=0) as trainer:
        result = trainer.train(resume=True)
    assert result.resumed_from == 2 and result.steps == 4
    rows = train_rows(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["staleness/mean"] for r in rows[2:]] == [0.0, 1.0]  # the resumed step 3 is sync
