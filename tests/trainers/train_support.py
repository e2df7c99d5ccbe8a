"""Shared pieces of the training tests (also run as a script in a subprocess, see main())."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from envkit.types import Trajectory


def even_tokens(trajectory: Trajectory, **_: Any) -> float | None:
    """A reward with spread for a random model: the fraction of sampled token ids that are even."""
    ids = [t for c in trajectory.completions for t in (c.token_ids or [])]
    return sum(1 for t in ids if t % 2 == 0) / len(ids) if ids else None


def tiny_config(out: Path, **overrides: Any) -> Any:
    from envkit.trainers import GRPOConfig

    base = dict(
        output_dir=str(out),
        max_steps=4,
        save_steps=2,
        group_size=4,
        groups_per_step=2,
        max_new_tokens=6,
        env_kwargs={"operators": "+", "max_turns": 2},
        concurrency=1,  # episodes one after another: sampling is bit-for-bit reproducible
        kl_to_base_every=2,
        progress=False,
        torch_threads=1,
    )
    base.update(overrides)
    return GRPOConfig(**base)


def make_trainer(out: Path, **overrides: Any) -> Any:
    from envkit.trainers import GRPOTrainer

    return GRPOTrainer(
        "tiny-random", "Arithmetic-v0", reward=even_tokens, config=tiny_config(out, **overrides)
    )


def main() -> None:
    """``python train_support.py OUT HANG_AT_STEP``: train, and hang when step HANG_AT begins."""
    from transformers import TrainerCallback

    out, hang_at = Path(sys.argv[1]), int(sys.argv[2])

    class Hang(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == hang_at - 1:
                (out.parent / "hanging").write_text(str(state.global_step))
                time.sleep(600)

    trainer = make_trainer(out)
    trainer.backend.add_callback(Hang())
    trainer.train()


def distributed_main() -> None:
    """``torchrun --nproc_per_node 2 train_support.py --ddp OUT``: 2 steps, then each rank writes
    a fingerprint of its LoRA weights (they must agree: DDP keeps the replicas in sync)."""
    import hashlib
    import os

    out = Path(sys.argv[2])
    trainer = make_trainer(out, max_steps=2, concurrency=4)
    result = trainer.train()
    digest = hashlib.sha256()
    for name, p in sorted(trainer.model.named_parameters()):
        if "lora_" in name:
            digest.update(p.detach().cpu().numpy().tobytes())
    rank = os.environ["RANK"]
    (out.parent / f"rank{rank}.txt").write_text(f"{result.steps} {digest.hexdigest()}")


if __name__ == "__main__":
    distributed_main() if sys.argv[1] == "--ddp" else main()
