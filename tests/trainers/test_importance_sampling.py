"""Importance sampling for off-policy episodes: TRL's loss, weighted by the truncated ratio.

One real optimizer step of ``TRLBackend`` on the fixed 8-sequence batch of the loss tests
(float64 tiny model, random LoRA adapter), with behaviour log-probabilities that either equal the
model's (ratio 1: the gradient must be the plain path's) or come from a perturbed ("stale")
adapter (the gradient must be the one of a truncated-IS loss computed here by hand, row by row,
without TRL). Tolerances as in test_loss_equivalence.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from train_support import GROUP, assert_grads_close, lora_model, one_step, rollout  # noqa: E402

from envkit.trainers.importance import MODES, importance_ratio  # noqa: E402


def row_logps(model: Any, batch: dict[str, Any]) -> list[torch.Tensor]:
    """Each row's log-probabilities of its completion tokens (unpadded forward, with grad)."""
    out = []
    for prompt, completion in zip(batch["prompt_ids"], batch["completion_ids"], strict=True):
        ids = torch.tensor([prompt + completion])
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].to(torch.float64)
        out.append(logits.log_softmax(-1).gather(1, torch.tensor(completion)[:, None])[:, 0])
    return out


def stale_model(scale: float) -> Any:
    """The test adapter with noise added to every LoRA weight (an older policy)."""
    model, _ = lora_model()
    gen = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale * p.std())
    return model


def with_behaviour(batch: dict[str, Any], model: Any) -> dict[str, Any]:
    out = copy.deepcopy(batch)
    with torch.no_grad():
        out["logprobs"] = [lp.tolist() for lp in row_logps(model, batch)]
    return out


def capture_batch(store: dict[str, Any]) -> Any:
    """``setup`` for one_step: keeps the scored batch (advantages, importance ratio)."""

    def setup(trainer: Any) -> None:
        inner = trainer._generate_and_score_completions

        def wrapped(inputs: Any) -> Any:
            batch = inner(inputs)
            store.update(batch)
            return batch

        trainer._generate_and_score_completions = wrapped

    return setup


def hand_gradients(
    batch: dict[str, Any], advantages: torch.Tensor, mode: str, cap: float
) -> dict[str, torch.Tensor]:
    """The gradient of the dapo loss with truncated IS, computed without TRL:
    ``-sum_rows sum_tokens mask * w * A * exp(logp - sg(logp)) / loss tokens``, with ``w`` from
    the model's and the batch's behaviour log-probabilities."""
    model, _ = lora_model()
    logps = row_logps(model, batch)
    tokens = sum(sum(m) for m in batch["env_mask"])
    loss = torch.zeros((), dtype=torch.float64)
    for i, lp in enumerate(logps):
        mask = torch.tensor(batch["env_mask"][i], dtype=torch.float64)
        diff = (lp.detach() - torch.tensor(batch["logprobs"][i], dtype=torch.float64)) * mask
        if mode.startswith("sequence"):
            raw = torch.exp(diff.sum()).expand_as(lp)
        else:
            raw = torch.exp(diff)
        w = raw.clamp(max=cap) if mode.endswith("truncate") else raw.masked_fill(raw > cap, 0.0)
        loss = loss - (mask * w * advantages[i] * torch.exp(lp - lp.detach())).sum() / tokens
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_ratio_one_gives_the_plain_gradient(tmp_path: Path) -> None:
    model, _ = lora_model()
    batch = with_behaviour(rollout("full"), model)
    seen: dict[str, Any] = {}
    plain = one_step("envkit", batch, tmp_path / "plain", group_size=GROUP)
    weighted = one_step(
        "envkit",
        batch,
        tmp_path / "is",
        group_size=GROUP,
        setup=capture_batch(seen),
        backend_kwargs={"importance_sampling": "token_truncate", "importance_sampling_cap": 2.0},
    )
    ratio = seen["importance_sampling_ratio"]
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=1e-6)
    assert_grads_close(weighted, plain)


@pytest.mark.parametrize("mode", MODES)
def test_stale_behaviour_gradient_equals_hand_computed_truncated_is(
    tmp_path: Path, mode: str
) -> None:
    cap = 1.3
    batch = with_behaviour(rollout("full"), stale_model(scale=0.4 if mode[0] == "t" else 0.05))
    seen: dict[str, Any] = {}
    grads = one_step(
        "envkit",
        batch,
        tmp_path,
        group_size=GROUP,
        setup=capture_batch(seen),
        backend_kwargs={"importance_sampling": mode, "importance_sampling_cap": cap},
    )
    ratio = seen["importance_sampling_ratio"].flatten()
    # The perturbation is large enough that the weights differ and some were cut at the cap.
    assert float(ratio.max() - ratio.min()) > 0.05
    assert (ratio == cap).any() if mode.endswith("truncate") else (ratio == 0).any()
    expected = hand_gradients(batch, seen["advantages"], mode, cap)
    assert_grads_close(grads, expected)
    plain = one_step("envkit", batch, tmp_path / "plain", group_size=GROUP)
    name = next(iter(plain))
    assert not torch.allclose(plain[name], grads[name], rtol=1e-3)  # the weights mattered


def test_ratios_above_the_cap_are_truncated_or_masked() -> None:
    old = torch.tensor([[0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    behaviour = torch.log(torch.tensor([[1.0, 0.5, 0.1, 4.0]], dtype=torch.float64))
    mask = torch.tensor([[1, 1, 1, 0]])
    ratio, stats = importance_ratio(old, behaviour, mask, "token_truncate", 3.0)
    # ratios pi_old/pi_behaviour = 1, 2, 10 (masked token: 1)
    assert torch.allclose(ratio, torch.tensor([[1.0, 2.0, 3.0, 1.0]], dtype=torch.float64))
    assert stats["clipped"] == 1.0 and stats["tokens"] == 3.0
    assert stats["ratio_max"] == pytest.approx(10.0) and stats["ratio_min"] == pytest.approx(1.0)
    masked, _ = importance_ratio(old, behaviour, mask, "token_mask", 3.0)
    assert masked.tolist() == [[1.0, 2.0, 0.0, 1.0]]
    seq, _ = importance_ratio(old, behaviour, mask, "sequence_truncate", 3.0)
    assert seq.shape == (1, 1) and float(seq) == 3.0  # 1 * 2 * 10 = 20 -> 3
    seq_mask, _ = importance_ratio(old, behaviour, mask, "sequence_mask", 30.0)
    assert float(seq_mask) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="token_truncate"):
        importance_ratio(old, behaviour, mask, "tokens", 3.0)


def test_backend_refuses_an_unknown_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="importance_sampling must be"):
        one_step(
            "envkit",
            rollout("full"),
            tmp_path,
            group_size=GROUP,
            backend_kwargs={"importance_sampling": "truncate"},
        )
