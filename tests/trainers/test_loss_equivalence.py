"""envkit's loss is TRL's loss: one real optimizer step, gradient for gradient.

Each test runs one training step of ``TRLBackend`` (envkit's ``trl.GRPOTrainer`` subclass: it
drops zero-advantage rows, trims the padding they leave and splits micro-batches itself) and
one of plain ``trl.GRPOTrainer`` on the same fixed batch of 8 sequences in 2 groups (multi-turn
shaped: env tokens with ``env_mask`` 0 between policy tokens), with the same float64 tiny model
and random LoRA adapter, and compares the gradients of every adapter weight just before the
optimizer update.

* Without zero-advantage rows (or with ``drop_zero_signal=False``) the gradients are equal for
  every ``loss_type`` envkit's config accepts.
* Dropping zero-advantage rows multiplies the gradient by the factor docs/training.md states:
  rows / kept rows for the sequence-normalized losses (grpo, sapo, dr_grpo), loss tokens /
  kept loss tokens for the token-normalized ones (dapo, cispo, bnpo).

"Equal" is ``torch.allclose`` at a relative tolerance of 1e-5 (of the largest gradient entry):
the model computes in float64 and a batch whose padding is not trimmed agrees to 1e-15, but the
rotary tables are float32 (transformers builds them so) and trimming left padding shifts every
position of a row, which moves the gradients by up to about 5e-7 relative. Every effect the
tests look for (a missing or wrong factor, a row counted twice) is above 0.3 relative.
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import torch

from envkit.trainers.config import LossType

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from train_support import one_step  # noqa: E402

LOSS_TYPES = typing.get_args(LossType)
GROUP = 4
RTOL = 1e-5

# Which normalizer each loss divides by, hence what dropping zero-advantage rows does to the
# gradient (docs/training.md, "What dropping zero-advantage rows changes").
ROW_NORMALIZED = {"grpo", "sapo", "dr_grpo"}
TOKEN_NORMALIZED = {"dapo", "cispo", "bnpo"}
# bnpo normalizes by the loss tokens of each micro-batch: its gradient depends on which rows
# share a micro-batch, and TRL shuffles the rows before splitting while envkit keeps their order.
PARTITION_DEPENDENT = {"bnpo"}

# Rewards of the two groups of 4. "full": every advantage is non-zero; "tied": group 0 ties
# (advantage 0) and holds the longest prompt and completion, so dropping it trims padding;
# "unknown": a reward is unknown (None: TRL gives it advantage 0) and another equals its group's
# mean (advantage exactly 0 too): 3 rows are kept; "all_tied": nothing to learn from.
REWARDS: dict[str, list[float | None]] = {
    "full": [0.1, 0.9, 0.4, 0.6, 1.0, 0.0, 0.25, 0.75],
    "tied": [0.5, 0.5, 0.5, 0.5, 1.0, 0.0, 0.0, 1.0],
    "unknown": [0.5, 0.5, 0.5, 0.5, 1.0, 0.0, None, 0.5],
    "all_tied": [0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0],
}
KEPT = {"full": 8, "tied": 4, "unknown": 2, "all_tied": 0}


def _env_mask(length: int) -> list[int]:
    """Policy tokens, then env tokens, then policy tokens again (a 2-turn episode)."""
    first, env = max(1, length // 3), max(1, length // 4)
    return [1] * first + [0] * env + [1] * (length - first - env)


def rollout(rewards: str) -> dict[str, Any]:
    """The fixed batch, as ``rollout_func`` returns it."""
    gen = torch.Generator().manual_seed(7)
    prompt_lens = [7, 3, 5, 4, 3, 6, 4, 5]
    completion_lens = [12, 5, 8, 6, 7, 9, 4, 10]
    prompts = [torch.randint(10, 250, (n,), generator=gen).tolist() for n in prompt_lens]
    completions = [torch.randint(10, 250, (n,), generator=gen).tolist() for n in completion_lens]
    return {
        "prompt_ids": prompts,
        "completion_ids": completions,
        "logprobs": [[-1.0] * n for n in completion_lens],
        "env_mask": [_env_mask(n) for n in completion_lens],
        "envkit_reward": list(REWARDS[rewards]),
    }


def documented_factor(loss_type: str, batch: dict[str, Any], kept: list[int]) -> float:
    """What dropping all rows but ``kept`` multiplies the gradient by (docs/training.md)."""
    if loss_type in ROW_NORMALIZED:
        return len(batch["completion_ids"]) / len(kept)
    if loss_type in TOKEN_NORMALIZED:
        tokens = [sum(m) for m in batch["env_mask"]]
        return sum(tokens) / sum(tokens[i] for i in kept)
    raise AssertionError(f"docs/training.md states no factor for loss_type={loss_type!r}")


def kept_rows(rewards: str) -> list[int]:
    """Rows whose group-relative advantage is non-zero (computed here, independently of TRL)."""
    values = REWARDS[rewards]
    out = []
    for g in range(0, len(values), GROUP):
        known = [v for v in values[g : g + GROUP] if v is not None]
        mean = sum(known) / len(known)
        out += [g + i for i, v in enumerate(values[g : g + GROUP]) if v is not None and v != mean]
    return out


def assert_grads_close(
    actual: dict[str, Any], expected: dict[str, Any], factor: float = 1.0
) -> None:
    assert actual.keys() == expected.keys() and expected
    scale = max(float(g.abs().max()) for g in expected.values())
    assert scale > 0, "the reference gradient is zero: the comparison would prove nothing"
    for name, g in expected.items():
        want = g * factor
        assert torch.allclose(actual[name], want, rtol=RTOL, atol=RTOL * scale * factor), (
            name,
            float((actual[name] - want).abs().max()),
            scale,
        )


_TRL_GRADS: dict[tuple[str, str, int], dict[str, Any]] = {}


def trl_gradients(
    tmp_path: Path, rewards: str, loss_type: str, micro_batches: int
) -> dict[str, Any]:
    """Plain TRL's gradient on the fixed batch (computed once per case for the whole module)."""
    key = (rewards, loss_type, micro_batches)
    if key not in _TRL_GRADS:
        _TRL_GRADS[key] = one_step(
            "trl",
            rollout(rewards),
            tmp_path,
            group_size=GROUP,
            micro_batches=micro_batches,
            loss_type=loss_type,
        )
    return _TRL_GRADS[key]


def _micro_batches(loss_type: str) -> list[int]:
    return [1] if loss_type in PARTITION_DEPENDENT else [1, 2]


CASES = [(lt, mb) for lt in LOSS_TYPES for mb in _micro_batches(lt)]


@pytest.mark.parametrize(("loss_type", "micro_batches"), CASES)
def test_gradient_equals_trl_without_zero_advantage_rows(
    tmp_path: Path, loss_type: str, micro_batches: int
) -> None:
    batch = rollout("full")
    assert kept_rows("full") == list(range(8))
    kw = dict(group_size=GROUP, micro_batches=micro_batches, loss_type=loss_type)
    trl_grads = trl_gradients(tmp_path, "full", loss_type, micro_batches)
    envkit_grads = one_step("envkit", batch, tmp_path, **kw)
    assert_grads_close(envkit_grads, trl_grads)


@pytest.mark.parametrize(("loss_type", "micro_batches"), CASES)
def test_gradient_equals_trl_when_zero_advantage_rows_are_kept(
    tmp_path: Path, loss_type: str, micro_batches: int
) -> None:
    batch = rollout("tied")
    kw = dict(group_size=GROUP, micro_batches=micro_batches, loss_type=loss_type)
    trl_grads = trl_gradients(tmp_path, "tied", loss_type, micro_batches)
    envkit_grads = one_step("envkit", batch, tmp_path, drop_zero_signal=False, **kw)
    assert_grads_close(envkit_grads, trl_grads)


@pytest.mark.parametrize(("loss_type", "micro_batches"), CASES)
def test_dropping_zero_advantage_rows_scales_the_gradient_by_the_documented_factor(
    tmp_path: Path, loss_type: str, micro_batches: int
) -> None:
    batch = rollout("tied")
    kept = kept_rows("tied")
    assert kept == [4, 5, 6, 7]
    factor = documented_factor(loss_type, batch, kept)
    assert factor > 1.5  # big enough that a missing or wrong factor cannot pass the tolerance
    kw = dict(group_size=GROUP, micro_batches=micro_batches, loss_type=loss_type)
    trl_grads = trl_gradients(tmp_path, "tied", loss_type, micro_batches)
    envkit_grads = one_step("envkit", batch, tmp_path, **kw)
    assert_grads_close(envkit_grads, trl_grads, factor)


def test_unknown_rewards_and_uneven_micro_batches_dapo(tmp_path: Path) -> None:
    """dapo (the default) normalizes by the loss tokens of the whole step, so even micro-batches
    of unequal size, and empty ones, give the documented factor: 2 kept rows in 4 micro-batches
    (two of them empty), one row dropped for its unknown reward, one for its mean reward."""
    batch = rollout("unknown")
    kept = kept_rows("unknown")
    assert kept == [4, 5]
    factor = documented_factor("dapo", batch, kept)
    trl_grads = one_step("trl", batch, tmp_path, group_size=GROUP, micro_batches=4)
    envkit_grads = one_step("envkit", batch, tmp_path, group_size=GROUP, micro_batches=4)
    assert_grads_close(envkit_grads, trl_grads, factor)


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_a_step_where_every_group_ties_has_zero_gradient(tmp_path: Path, loss_type: str) -> None:
    batch = rollout("all_tied")
    assert kept_rows("all_tied") == []
    trl_grads = one_step("trl", batch, tmp_path, group_size=GROUP, loss_type=loss_type)
    envkit_grads = one_step(
        "envkit", batch, tmp_path, group_size=GROUP, micro_batches=2, loss_type=loss_type
    )
    assert trl_grads.keys() == envkit_grads.keys() and envkit_grads
    for name, g in envkit_grads.items():
        assert torch.equal(g, torch.zeros_like(g)), name
        assert torch.equal(trl_grads[name], torch.zeros_like(g)), name
