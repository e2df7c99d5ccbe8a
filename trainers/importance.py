"""Importance weights for episodes sampled by another policy than the one being trained.

With overlapped rollouts (``max_staleness > 0``) or a separate inference server, the tokens of a
step were sampled by a *behaviour* policy (an adapter up to k optimizer steps old, or the
server's numerics) while GRPO's loss assumes they came from the policy at the start of the step.
envkit corrects the lag as TRL does for vLLM (``vllm_importance_sampling_correction``,
``trl/trainer/grpo_trainer.py``) and as "Your efficient RL framework secretly brings you
off-policy RL training" (Yao et al. 2025, truncated importance sampling) and PipelineRL (Piché et
al. 2025) do: every token's loss is multiplied by

    w = min(pi_old(token) / pi_behaviour(token), C)

where ``pi_old`` is the trained model before the step (one no-grad forward pass) and
``pi_behaviour`` the log-probability recorded while sampling. ``*_mask`` modes set ``w = 0``
where the ratio exceeds ``C`` instead of truncating; ``sequence_*`` modes use one ratio per
episode, the product over its loss tokens. The weight carries no gradient.

Example:
    >>> import torch
    >>> old = torch.tensor([[-1.0, -2.0, -0.5]])
    >>> behaviour = torch.tensor([[-1.0, -3.5, -0.4]])
    >>> mask = torch.tensor([[1, 1, 0]])
    >>> ratio, stats = importance_ratio(old, behaviour, mask, "token_truncate", cap=3.0)
    >>> [round(x, 3) for x in ratio[0].tolist()]  # exp(0)=1, exp(1.5)=4.48 -> 3; masked -> 1
    [1.0, 3.0, 1.0]
    >>> stats["clipped"], stats["tokens"]
    (1.0, 2.0)
"""

from __future__ import annotations

import math

import torch

__all__ = ["MODES", "importance_ratio"]

MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")
"""The correction modes (TRL's ``vllm_importance_sampling_mode`` values)."""


def importance_ratio(
    old_logps: torch.Tensor,
    behaviour_logps: torch.Tensor,
    mask: torch.Tensor,
    mode: str,
    cap: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The truncated (or masked) importance weights of a batch, and their statistics.

    Args:
        old_logps: (B, T) log-probabilities of the sampled tokens under the trained policy.
        behaviour_logps: (B, T) the same under the policy that sampled them (NaN: unknown, the
            token gets ratio 1, as in TRL).
        mask: (B, T) loss tokens (completion tokens that are not env/tool tokens).
        mode: One of ``MODES``.
        cap: The bound C.

    Returns:
        ``(weights, stats)``: weights of shape (B, T) for ``token_*`` modes and (B, 1) for
        ``sequence_*`` ones; ``stats`` holds sums over the loss tokens (or episodes) so that
        processes can be combined: ``tokens`` (count), ``ratio_sum``, ``ratio_min``,
        ``ratio_max`` (of the raw ratio, before truncation), ``clipped`` (count above ``cap``),
        ``diff_sum`` (sum of ``|old - behaviour|`` over loss tokens) and ``diff_tokens``.

    Raises:
        ValueError: an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"importance sampling mode must be one of {MODES}, got {mode!r}")
    mask = mask.to(old_logps.dtype)
    diff = torch.nan_to_num((old_logps - behaviour_logps) * mask, nan=0.0)
    sequence = mode.startswith("sequence")
    log_ratio = diff.sum(-1, keepdim=True) if sequence else diff
    raw = torch.exp(log_ratio)
    if mode.endswith("truncate"):
        weights = torch.clamp(raw, max=cap)
    else:
        weights = raw.masked_fill(raw > cap, 0.0)
    counted = raw.flatten()[mask.sum(-1) > 0] if sequence else raw[mask > 0]
    n = float(counted.numel())
    stats = {
        "tokens": n,
        "ratio_sum": float(counted.sum()) if n else 0.0,
        "ratio_min": float(counted.min()) if n else math.inf,
        "ratio_max": float(counted.max()) if n else -math.inf,
        "clipped": float((counted > cap).sum()) if n else 0.0,
        "diff_sum": float(diff.abs().sum()),
        "diff_tokens": float(mask.sum()),
    }
    return weights.detach(), stats
