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
from train_support import (  # noqa: E402
    GROUP,
    REWARDS,
    assert_grads_close,
    one_step,
    rollout,
)

LOSS_TYPES = typing.get_args(LossType)

# Which normalizer each loss divides by, hence what dropping zero-advantage rows does to the
# gradient (docs/training.md, "What dropping zero-advantage rows changes").
ROW_NORMALIZED = {"grpo", "sapo", "dr_grpo"}
TOKEN_NORMALIZED = {"dapo", "cispo", "bnpo"}
# bnpo normalizes by the loss tokens of each micro-batch: its gradient depends on which rows
# share a micro-batch, and TRL shuffles the rows before splitting while envkit keeps their order.
PARTITION_DEPENDENT = {"bnpo"}


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
