"""Env and tool tokens carry no gradient, checked inside a real training step.

A scripted 3-turn tool episode (two tool calls, then an answer; a group of two, one right and one
wrong) is played by envkit's real ``EpisodeSource`` through a real ``ChatEnv`` with a
``ToolBox``, rendered into one sequence per episode with its ``env_mask``, handed to TRL through
``rollout_func`` and trained on for one step by ``TRLBackend``. The per-token log-probabilities
TRL computes in the loss are observed (not replaced), and after ``backward``:

* the loss gradient w.r.t. every env/tool token's log-probability is exactly 0, and w.r.t. every
  sampled token's it is non-zero, for every ``loss_type``;
* the LoRA gradient equals the gradient of the GRPO objective written out by hand over the
  sampled tokens only, and differs from the same objective over all tokens.

Negative controls: the same step with the ``env_mask`` removed from the rollout (what a TRL that
ignored it would do) or set to all ones gives the env tokens a non-zero gradient, so the checks
above fail when the mask does not reach the loss.
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import torch

from envkit.policies import CallablePolicy, HFPolicy
from envkit.trainers.config import GRPOConfig, LossType
from envkit.trainers.episodes import BackgroundLoop, EpisodeSource

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import calc_support  # noqa: E402
from calc_support import CalcEnv  # noqa: E402
from train_support import lora_model, one_step  # noqa: E402

TOOL_TURNS = [
    '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>',
    '<tool_call>\n{"name": "mul", "arguments": {"a": 5, "b": 4}}\n</tool_call>',
]
ANSWERS = ["The answer is 20.", "The answer is 21."]  # first final turn right, second wrong


def scripted_policy(tok: Any) -> CallablePolicy:
    """Renders prompts exactly as ``HFPolicy`` does and "samples" the scripted turns."""
    answers = iter(ANSWERS)

    def next_text(messages: list[dict[str, Any]]) -> str:
        turn = sum(1 for m in messages if m["role"] == "assistant")
        return TOOL_TURNS[turn] if turn < len(TOOL_TURNS) else next(answers)

    renderer = HFPolicy(lora_model()[0], tok, max_new_tokens=64)
    return calc_support.scripted_policy(renderer, tok, next_text, lambda i: -1.0)


class LossObserver:
    """Keeps the batch and the per-token log-probabilities of the loss, with their gradient."""

    def __init__(self) -> None:
        self.inputs: list[dict[str, Any]] = []
        self.logps: list[torch.Tensor] = []
        self.policy_mask = torch.zeros(0, dtype=torch.bool)

    def attach(self, trainer: Any) -> None:
        logps_fn, loss_fn = trainer._get_per_token_logps_and_entropies, trainer.compute_loss

        def logps(*args: Any, **kwargs: Any) -> Any:
            out = logps_fn(*args, **kwargs)
            if torch.is_grad_enabled() and out[0].requires_grad:
                out[0].retain_grad()
                self.logps.append(out[0])
            return out

        def loss(model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            self.inputs.append(inputs)
            return loss_fn(model, inputs, *args, **kwargs)

        trainer._get_per_token_logps_and_entropies = logps
        trainer.compute_loss = loss

    def gradients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(|gradient| at env-token positions, |gradient| at sampled-token positions)."""
        assert len(self.inputs) == len(self.logps) == 1
        batch, logps = self.inputs[0], self.logps[0]
        assert logps.grad is not None
        real = batch["completion_mask"].bool()
        policy = self.policy_mask & real
        grad = logps.grad.abs()
        return grad[real & ~policy], grad[policy]


def play_step(
    tmp_path: Path, loss_type: str, mask: str = "env"
) -> tuple[LossObserver, dict[str, Any], dict[str, Any]]:
    """One training step on the scripted group; ``mask``: "env" (as envkit sends it), "none"
    (env_mask left out of the rollout) or "ones" (every token marked as sampled)."""
    _, tok = lora_model()
    loop = BackgroundLoop()
    config = GRPOConfig(group_size=2, groups_per_step=1, concurrency=1, kl_to_base_every=0)
    policy = scripted_policy(tok)
    source = EpisodeSource(
        CalcEnv,
        config,
        make_policy=lambda model: policy,
        reward=None,
        stop_token_ids=[tok.convert_tokens_to_ids("<|im_end|>")],
        run_dir=None,
        loop=loop,
    )
    sent: dict[str, Any] = {}

    def episodes(inputs: list[dict[str, Any]], trainer: Any) -> dict[str, Any]:
        rollout = source(inputs, trainer)
        sent["env_mask"] = [list(m) for m in rollout["env_mask"]]
        sent["completion_ids"] = rollout["completion_ids"]
        sent["rewards"] = rollout["envkit_reward"]
        if mask == "none":
            del rollout["env_mask"]
        elif mask == "ones":
            rollout["env_mask"] = [[1] * len(m) for m in rollout["env_mask"]]
        return rollout

    observer = LossObserver()
    try:
        grads = one_step(
            "envkit", episodes, tmp_path, group_size=2, loss_type=loss_type, setup=observer.attach
        )
    finally:
        loop.close()
    # Which positions the policy sampled, from what envkit rendered (not from what TRL received).
    width = observer.inputs[0]["completion_ids"].shape[1]
    observer.policy_mask = torch.tensor(
        [(m + [0] * width)[:width] for m in sent["env_mask"]], dtype=torch.bool
    )
    return observer, sent, grads


def reference_gradient(
    batch: dict[str, Any], loss_tokens: torch.Tensor
) -> tuple[dict[str, torch.Tensor], float]:
    """The LoRA gradient of DAPO's objective written out by hand (one step, ratio 1, no KL):
    ``-sum_rt A_r * logp_rt * m_rt / sum(m)`` with ``m = loss_tokens``, each row run unpadded."""
    model, _ = lora_model()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = torch.zeros((), dtype=torch.float64)
    for r in range(batch["completion_ids"].shape[0]):
        prompt = batch["prompt_ids"][r][batch["prompt_mask"][r].bool()]
        real = batch["completion_mask"][r].bool()
        completion = batch["completion_ids"][r][real]
        ids = torch.cat([prompt, completion])[None]
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
        logp = torch.log_softmax(logits, -1).gather(1, completion[:, None])[:, 0]
        total = total - batch["advantages"][r] * (logp * loss_tokens[r][real]).sum()
    grads = torch.autograd.grad(total / loss_tokens.sum(), list(params.values()))
    return dict(zip(params, grads, strict=True)), float(loss_tokens.sum())


@pytest.mark.parametrize("loss_type", typing.get_args(LossType))
def test_env_tokens_get_exactly_zero_gradient(tmp_path: Path, loss_type: str) -> None:
    observer, sent, _ = play_step(tmp_path, loss_type)
    assert sorted(sent["rewards"]) == [0.0, 1.0]  # a group with signal: both rows are trained
    _, tok = lora_model()
    for ids, mask in zip(sent["completion_ids"], sent["env_mask"], strict=True):
        env_text = tok.decode([t for t, m in zip(ids, mask, strict=True) if not m])
        assert env_text.count("<tool_response>") == 2, env_text
        assert mask.count(0) >= 20 and mask.count(1) >= 20
    env, policy = observer.gradients()
    assert env.numel() == sum(m.count(0) for m in sent["env_mask"])
    assert torch.all(env == 0), f"{int((env != 0).sum())} env-token positions got gradient"
    assert torch.all(policy > 0), f"{int((policy == 0).sum())} sampled tokens got no gradient"


@pytest.mark.parametrize("mask", ["none", "ones"])
def test_negative_control_without_env_mask_env_tokens_get_gradient(
    tmp_path: Path, mask: str
) -> None:
    """If the env_mask did not reach TRL's loss, the check above would see it."""
    observer, _, _ = play_step(tmp_path, "dapo", mask=mask)
    env, policy = observer.gradients()
    assert env.numel() > 0 and torch.all(env > 0)
    assert torch.all(policy > 0)


def test_lora_gradient_is_the_objective_over_sampled_tokens_only(tmp_path: Path) -> None:
    observer, _, grads = play_step(tmp_path, "dapo")
    batch = observer.inputs[0]
    real = batch["completion_mask"].to(torch.float64)
    sampled = real * observer.policy_mask.to(torch.float64)
    expected, tokens = reference_gradient(batch, sampled)
    assert tokens == float(batch["num_items_in_batch"])
    scale = max(float(g.abs().max()) for g in expected.values())
    assert grads.keys() == expected.keys() and scale > 0
    for name, g in expected.items():
        assert torch.allclose(grads[name], g, rtol=1e-5, atol=1e-5 * scale), name
    # The same objective with the env tokens in it is a different gradient.
    leaky, _ = reference_gradient(batch, real)
    diff = max(float((leaky[n] - g).abs().max()) for n, g in expected.items())
    assert diff > 0.05 * scale
