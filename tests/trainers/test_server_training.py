"""Training through an inference server: ``envkit serve`` in a separate process samples the
rollouts, the trainer pushes its adapter after every optimizer step.

The server and the trainer load the same model directory (the tiny random model saved once).
After 2 steps, step 2's sampled log-probabilities are recomputed here with the adapter the
trainer saved after step 1: they match, and those of the base model do not, so step 2 was
sampled with the updated adapter.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from envkit.trainers.run_dir import RunDir

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from train_support import even_tokens, tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from envkit.models import load_model

    folder = tmp_path_factory.mktemp("tiny") / "model"
    model, tok = load_model("tiny-random")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def completion_logps(model: Any, completion: Any) -> torch.Tensor:
    prompt, sampled = list(completion.prompt_token_ids), list(completion.token_ids)
    ids = torch.tensor([prompt + sampled])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    return logits.log_softmax(-1).gather(1, torch.tensor(sampled)[:, None])[:, 0]


def test_two_steps_through_a_server_sample_with_the_pushed_adapter(
    tmp_path: Path, model_dir: Path
) -> None:
    import peft
    from transformers import AutoModelForCausalLM

    from envkit.serving import ServerProcess
    from envkit.trainers import GRPOTrainer
    from envkit.types import TrajectoryGroup

    out = tmp_path / "run"
    n = torch.get_num_threads()
    with ServerProcess(str(model_dir), args=["--seed", "0"]) as server:
        config = tiny_config(
            out,
            max_steps=2,
            policy_server=server.url,
            learning_rate=0.05,  # one update visibly moves the tiny model
            kl_to_base_every=0,
            env_kwargs={"operators": "+", "max_turns": 1},
        )
        with GRPOTrainer(str(model_dir), "Arithmetic-v0", reward=even_tokens, config=config) as t:
            t.train()
            assert t.episodes.server_policy.adapters == [t.episodes._server_adapter]  # v0 unloaded
    torch.set_num_threads(n)
    rows = [r for r in RunDir(out).read_metrics() if r["kind"] == "train"]
    assert [r["staleness/mean"] for r in rows] == [0.0, 0.0]
    assert all("is/ratio_mean" in r for r in rows)

    lines = RunDir(out).trajectories_path(2).read_text().splitlines()
    completions = [
        c
        for line in lines
        for traj in TrajectoryGroup.model_validate_json(line).trajectories
        for c in traj.completions
    ]
    assert completions and all(c.logprobs for c in completions)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tuned = peft.PeftModel.from_pretrained(base, out / "server_adapters" / "v000001")
    tuned.eval()
    with_adapter, without = [], []
    for c in completions:
        behaviour = torch.tensor(c.logprobs)
        with_adapter.append(float((completion_logps(tuned, c) - behaviour).abs().max()))
        with tuned.disable_adapter():
            without.append(float((completion_logps(tuned, c) - behaviour).abs().max()))
    assert max(with_adapter) < 1e-3, with_adapter
    assert max(without) > 20 * max(max(with_adapter), 1e-5), (without, with_adapter)
