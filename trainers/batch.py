"""Tensor bookkeeping between TRL's scored batch and its loss: drop, trim, split.

TRL's ``_generate_and_score_completions`` returns a dict of tensors whose first dimension is the
episode. Episodes whose advantage is exactly zero (their group's rewards all tie, or their reward
is unknown: judge error, failed episode) contribute nothing to the policy-gradient term of the
loss when there is no KL term, so envkit leaves them out of the forward/backward pass, trims the
padding the remaining rows no longer need, and splits the rest into micro-batches.

Example:
    >>> import torch
    >>> batch = {"prompt_ids": torch.tensor([[0, 5], [6, 7]]),
    ...          "prompt_mask": torch.tensor([[0, 1], [1, 1]]),
    ...          "completion_ids": torch.tensor([[1, 2, 0], [3, 0, 0]]),
    ...          "completion_mask": torch.tensor([[1, 1, 0], [1, 0, 0]]),
    ...          "advantages": torch.tensor([0.0, 1.5]),
    ...          "num_items_in_batch": torch.tensor(3)}
    >>> kept = keep_rows(batch, batch["advantages"] != 0)
    >>> kept["prompt_ids"].tolist(), kept["completion_ids"].tolist()
    ([[6, 7]], [[3]])
"""

from __future__ import annotations

import itertools
from typing import Any

import torch

__all__ = [
    "AUTO_MICRO_BATCH_ROWS",
    "COMPLETION_KEYS",
    "PROMPT_KEYS",
    "auto_micro_batches",
    "keep_rows",
    "loss_mask",
    "split_rows",
]

AUTO_MICRO_BATCH_ROWS = {"cpu": 4, "cuda": 16}
"""Most sequences in one forward/backward pass when ``micro_batches`` is left unset, per device
type. The activations kept for the backward pass grow with the tokens of a pass: one pass over a
step of 32 SmolLM2-135M sequences of ~100 tokens peaked at ~7.8 GB of RSS on CPU (a 3-turn
episode's sequence is ~3x longer), 4 sequences per pass keep a run under ~4 GB."""

PROMPT_KEYS = ("prompt_ids", "prompt_mask")
"""Left-padded tensors of shape (B, P)."""
COMPLETION_KEYS = (
    "completion_ids",
    "completion_mask",
    "tool_mask",
    "old_per_token_logps",
    "sampling_per_token_logps",
    "ref_per_token_logps",
    "importance_sampling_ratio",
)
"""Right-padded tensors of shape (B, C) (``importance_sampling_ratio`` may be (B, 1))."""


def auto_micro_batches(episodes: int, device: str = "cpu", rows: int | None = None) -> int:
    """The fewest micro-batches that split ``episodes`` evenly with at most ``rows`` each.

    Args:
        episodes: Sequences per process and step.
        device: ``"cpu"`` or ``"cuda[:N]"``: picks ``rows`` from ``AUTO_MICRO_BATCH_ROWS``.
        rows: Most sequences per micro-batch (overrides the device default).

    Example:
        >>> auto_micro_batches(32), auto_micro_batches(16), auto_micro_batches(6)
        (8, 4, 2)
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    cap = rows if rows is not None else AUTO_MICRO_BATCH_ROWS["cuda" if "cuda" in device else "cpu"]
    if cap < 1:
        raise ValueError(f"rows must be >= 1, got {cap}")
    return next(d for d in range(1, episodes + 1) if episodes % d == 0 and episodes // d <= cap)


def loss_mask(batch: dict[str, Any]) -> torch.Tensor:
    """The tokens that carry gradient: completion tokens that are not env/tool tokens."""
    mask = batch["completion_mask"]
    if batch.get("tool_mask") is not None:
        mask = mask * batch["tool_mask"]
    return mask


def keep_rows(batch: dict[str, Any], keep: torch.Tensor) -> dict[str, Any]:
    """Keeps the rows where ``keep`` is true and trims padding columns no kept row needs.

    ``num_items_in_batch`` (the local count of loss tokens) is recomputed for the kept rows; in a
    distributed run the caller sums it over processes.
    """
    keep = keep.to(torch.bool)
    size = int(keep.shape[0])
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == size:
            out[key] = value[keep]
        elif isinstance(value, list) and len(value) == size:
            out[key] = [v for v, k in zip(value, keep.tolist(), strict=True) if k]
        else:
            out[key] = value
    prompt_mask = out["prompt_mask"]
    completion_mask = out["completion_mask"]
    if prompt_mask.shape[0] > 0:
        used = prompt_mask.sum(0) > 0
        first = int(used.nonzero()[0]) if used.any() else prompt_mask.shape[1]
        for key in PROMPT_KEYS:
            if out.get(key) is not None:
                out[key] = out[key][:, first:]
        used = completion_mask.sum(0) > 0
        width = int(used.nonzero()[-1]) + 1 if used.any() else 1
        for key in COMPLETION_KEYS:
            value = out.get(key)
            if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape[1] > 1:
                out[key] = value[:, :width]
    out["num_items_in_batch"] = loss_mask(out).sum()
    return out


def split_rows(batch: dict[str, Any], chunks: int) -> list[dict[str, Any]]:
    """Splits the rows into ``chunks`` micro-batches as evenly as possible (some may be empty)."""
    rows = int(batch["completion_ids"].shape[0])
    bounds = [round(i * rows / chunks) for i in range(chunks + 1)]
    out = []
    for lo, hi in itertools.pairwise(bounds):
        sel = torch.zeros(rows, dtype=torch.bool)
        sel[lo:hi] = True
        part = keep_rows(batch, sel)
        # The loss normalizer of token-level losses spans the whole step, not the micro-batch.
        part["num_items_in_batch"] = batch["num_items_in_batch"]
        out.append(part)
    return out
