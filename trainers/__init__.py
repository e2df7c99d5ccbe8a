"""GRPO + LoRA training on envkit environments (TRL + peft + transformers underneath).

``GRPOConfig`` holds every knob; ``EnvMixture`` trains on several envs by weight;
``GRPOTrainer(model, env, reward, config).train()`` leaves a run folder with metrics, trajectories,
a reward curve and a peft adapter; ``evaluate_adapters`` compares several adapters of one base model
side by side. Heavy modules (torch, transformers, trl, peft) are imported only when these are used.

Example:
    >>> from envkit.trainers import GRPOConfig
    >>> GRPOConfig().group_size
    8
"""

from __future__ import annotations

import importlib
from typing import Any

from envkit.trainers.config import GRPOConfig

__all__ = [
    "EnvMixture",
    "GRPOConfig",
    "GRPOTrainer",
    "TrainResult",
    "evaluate_adapters",
    "plot_run",
    "print_comparison",
    "print_summary",
    "render_trajectory",
    "summarize_run",
]

_LAZY = {
    "EnvMixture": "envkit.trainers.mixture",
    "GRPOTrainer": "envkit.trainers.grpo",
    "TrainResult": "envkit.trainers.grpo",
    "evaluate_adapters": "envkit.trainers.adapters",
    "print_comparison": "envkit.trainers.adapters",
    "plot_run": "envkit.trainers.report",
    "print_summary": "envkit.trainers.report",
    "summarize_run": "envkit.trainers.report",
    "render_trajectory": "envkit.trainers.sequences",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'envkit.trainers' has no attribute {name!r}")
