"""Training from Python (not the CLI) on your own environment and reward: GRPO + LoRA.

Shows: an env defined and registered in this file, a reward written as a Python function,
``GRPOConfig`` and ``GRPOTrainer`` (TRL + peft under the hood), the run folder it leaves
(metrics, trajectories, the LoRA adapter), and ``trainer.evaluate()`` on held-out seeds for the
base model and the adapter. It uses ``tiny-random`` (a tiny random-init model, so it learns
nothing and runs in under a minute on a CPU); use ``smollm2-135m`` or a model folder of your own
for real runs.

Run:
    python examples/train_from_python.py [RUN_FOLDER]     # default: a new temporary folder
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import envkit
from envkit import ChatEnv, Feedback, Task
from envkit.metrics import summarize
from envkit.parsing import final_response
from envkit.trainers import GRPOConfig, GRPOTrainer
from envkit.types import Message, Trajectory

ANIMALS = ["cat", "dog", "owl", "fox", "bee"]


class NameAnimalEnv(ChatEnv):
    """Name the animal described; reward 1.0 when the reply contains its name."""

    step_in_thread = False

    def __init__(self, *, render_mode: str | None = None) -> None:
        super().__init__(max_turns=1, render_mode=render_mode)

    def make_task(self, options: dict[str, Any] | None) -> Task:
        animal = ANIMALS[int(self.np_random.integers(len(ANIMALS)))]
        prompt = f"Which three-letter animal starts with '{animal[0]}'? One word."
        return Task(messages=[{"role": "user", "content": prompt}], reference=animal)

    def respond(self, message: Message) -> Feedback:
        assert self.task is not None
        ok = self.task.reference in (message.content or "").lower()
        return Feedback(reward=float(ok), done=True)


envkit.register("NameAnimal-v0", entry_point=NameAnimalEnv)


def short_and_right(trajectory: Trajectory, **_: Any) -> float:
    """Our reward instead of the env's: right (1.0) minus 0.01 per character of the reply."""
    text = final_response(trajectory)
    right = float(str(trajectory.reference) in text.lower())
    return right - 0.01 * len(text)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "run"
    config = GRPOConfig(
        output_dir=str(out),
        max_steps=2,
        group_size=2,
        groups_per_step=2,
        max_new_tokens=8,
        learning_rate=1e-3,
        save_steps=1,
        kl_to_base_every=0,
    )
    trainer = GRPOTrainer("tiny-random", "NameAnimal-v0", reward=short_and_right, config=config)
    result = trainer.train()
    print(f"trained {result.steps} steps -> {result.run_dir}")
    print(f"adapter: {result.adapter_dir}")
    for line in (result.run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        print(f"step {row['step']}: reward/mean {row.get('reward/mean')}")
    seeds = range(4)
    for name, adapter in (("base", False), ("adapter", True)):
        summary = summarize(trainer.evaluate(seeds, adapter=adapter))
        print(f"held-out {name}: {summary.episodes} episodes, mean reward {summary.mean_reward}")


if __name__ == "__main__":
    main()
