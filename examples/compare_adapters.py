"""Comparing LoRA adapters side by side: the base model and each adapter on the same tasks.

Shows: ``envkit.trainers.adapters.evaluate_adapters`` (the base model is loaded once, each
adapter is swapped in with peft, every policy plays the same seeds with the same sampling seed)
and ``print_comparison`` (one table: mean reward, pass@k, outcomes per policy). The same from
the command line::

    envkit eval Arithmetic-v0 --model tiny-random --adapter RUN_A --adapter RUN_B -n 8

Without arguments it first trains two tiny adapters (one GRPO step each, two learning rates) on
``tiny-random``, so it runs anywhere in about a minute; pass your own run or adapter folders to
compare those instead (with ``--model`` naming their base, e.g. ``smollm2-135m``).

Run:
    python examples/compare_adapters.py
    python examples/compare_adapters.py --model smollm2-135m runs/a runs/b
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from envkit.parsing import final_response
from envkit.trainers import GRPOConfig, GRPOTrainer
from envkit.trainers.adapters import evaluate_adapters, print_comparison
from envkit.types import Trajectory

ENV = "Arithmetic-v0"
ENV_KWARGS = {"operators": "+", "max_turns": 1}


def letters(trajectory: Trajectory, **_: Any) -> float | None:
    """The share of ASCII letters in the reply: a reward that varies even for a random model
    (the env's own reward is 0 for all its replies, and GRPO learns nothing from ties)."""
    text = final_response(trajectory)
    return sum(c.isascii() and c.isalpha() for c in text) / len(text) if text else None


def train_two(model: str, folder: Path) -> list[Path]:
    """Two one-step runs that differ only in the learning rate; their run folders."""
    runs = []
    for lr in (1e-4, 1e-2):
        config = GRPOConfig(
            output_dir=str(folder / f"lr-{lr:g}"),
            max_steps=1,
            group_size=2,
            groups_per_step=2,
            max_new_tokens=8,
            learning_rate=lr,
            env_kwargs=ENV_KWARGS,
            kl_to_base_every=0,
        )
        runs.append(GRPOTrainer(model, ENV, reward=letters, config=config).train().run_dir)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapters", nargs="*", type=Path, help="run or adapter folders")
    parser.add_argument("--model", default="tiny-random", help="the adapters' base model")
    args = parser.parse_args()
    adapters = args.adapters or train_two(args.model, Path(tempfile.mkdtemp()))
    results = evaluate_adapters(
        args.model,
        ENV,
        adapters,
        seeds=range(4),
        group_size=2,
        env_kwargs=ENV_KWARGS,
        reward=letters,
        max_new_tokens=8,
    )
    print_comparison(results, Console(width=120))
    base = [final_response(t) for g in results["base"] for t in g]
    for name, groups in results.items():
        replies = [final_response(t) for g in groups for t in g]
        same = sum(a == b for a, b in zip(replies, base, strict=True))
        seeds = [g.seed for g in groups]
        print(f"{name}: {len(replies)} episodes on seeds {seeds}, {same} replies as the base's")


if __name__ == "__main__":
    main()
