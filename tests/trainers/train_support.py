"""Shared pieces of the training tests (also run as a script in a subprocess, see main())."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
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


# ---------------------------------------------------------------------- one gradient step
# The loss tests compare the gradient of one real optimizer step of envkit's backend with the one
# of plain ``trl.GRPOTrainer`` on the same fixed batch. The model is the tiny random Qwen2 in
# float64 with a LoRA adapter whose A and B are both random (peft's default B=0 would leave the A
# gradients zero), so every adapter weight gets a gradient and the comparison can be tight.


GROUP = 4
"""Group size of the fixed batch below (two groups)."""
RTOL = 1e-5
"""Relative tolerance of gradient comparisons (see test_loss_equivalence's module doc)."""

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
    import torch

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


def assert_grads_close(
    actual: dict[str, Any], expected: dict[str, Any], factor: float = 1.0
) -> None:
    import torch

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


def gradient_capture() -> Any:
    """A ``TrainerCallback`` whose ``grads`` are the trainable parameters' gradients of the last
    optimizer step, copied just before the update (after accumulation, clipping off)."""
    from transformers import TrainerCallback

    class GradientCapture(TrainerCallback):
        def __init__(self) -> None:
            self.grads: dict[str, Any] = {}

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.grads = {
                name: p.grad.detach().clone()
                for name, p in kw["model"].named_parameters()
                if p.requires_grad and p.grad is not None
            }

    return GradientCapture()


_LORA_MODEL: dict[str, Any] = {}


def lora_model() -> tuple[Any, Any]:
    """A fresh copy of the float64 tiny random model with a random-init LoRA adapter, and its
    tokenizer (every call returns identical weights)."""
    import copy

    import peft
    import torch

    from envkit.models import load_model

    if not _LORA_MODEL:
        model, tok = load_model("tiny-random")
        model = model.to(torch.float64)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1234)
            config = peft.LoraConfig(
                r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False
            )
            _LORA_MODEL["model"] = peft.get_peft_model(model, config)
        _LORA_MODEL["tok"] = tok
    return copy.deepcopy(_LORA_MODEL["model"]), _LORA_MODEL["tok"]


def one_step_args(
    out: Path,
    *,
    rows: int,
    group_size: int,
    micro_batches: int,
    loss_type: str,
    max_completion_length: int = 32,
) -> Any:
    """``trl.GRPOConfig`` for one optimizer step on ``rows`` sequences (as envkit's
    ``_trl_args`` sets it up: one generation per step, ``micro_batches`` accumulation steps),
    without gradient clipping so gradients can be compared as they are."""
    import trl

    from envkit.trainers._compat import checkpointing_args

    return trl.GRPOConfig(
        output_dir=str(out),
        max_steps=1,
        learning_rate=1e-3,
        per_device_train_batch_size=rows // micro_batches,
        gradient_accumulation_steps=micro_batches,
        num_generations=group_size,
        max_completion_length=max_completion_length,
        loss_type=loss_type,
        beta=0.0,
        max_grad_norm=0.0,
        use_cpu=True,
        bf16=False,
        fp16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        log_level="error",
        shuffle_dataset=False,
        remove_unused_columns=False,
        seed=0,
        **checkpointing_args(False),  # as envkit's default
    )


def one_step(
    kind: str,
    rollout: dict[str, Any] | Callable[[list[dict[str, Any]], Any], dict[str, Any]],
    out: Path,
    *,
    group_size: int,
    micro_batches: int = 1,
    loss_type: str = "dapo",
    drop_zero_signal: bool = True,
    callbacks: Sequence[Any] = (),
    setup: Any = None,
    backend_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Runs one real training step on the fixed ``rollout`` and returns the parameter gradients.

    Args:
        kind: ``"envkit"`` (``TRLBackend``: drop, trim, split) or ``"trl"`` (plain
            ``trl.GRPOTrainer`` with the same rollout through ``rollout_func``).
        rollout: TRL's rollout dict (prompt_ids, completion_ids, logprobs, env_mask and the
            ``envkit_reward`` that ``passthrough_reward`` hands to TRL's advantage computation),
            or an episode source called as ``rollout(dataset_rows, trainer)`` that returns one
            (``"envkit"`` only; e.g. ``envkit.trainers.episodes.EpisodeSource``).
        out: Scratch output folder.
        group_size: TRL's ``num_generations``.
        micro_batches: Gradient accumulation steps.
        loss_type: TRL's ``loss_type``.
        drop_zero_signal: envkit's switch (ignored for ``"trl"``).
        callbacks: Extra ``TrainerCallback`` objects.
        setup: Called with the trainer before ``train()`` (to attach observers).
        backend_kwargs: Extra ``TRLBackend`` arguments (``"envkit"`` only).
    """
    import copy
    import os

    import trl
    from datasets import Dataset

    from envkit.trainers.backend import TRLBackend, passthrough_reward

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    if callable(rollout):
        if kind != "envkit":
            raise ValueError("an episode source needs dataset rows: only kind='envkit' takes one")
        episodes, rows = rollout, group_size
    else:
        rows = len(rollout["completion_ids"])

        def episodes(inputs: list[dict[str, Any]], trainer: Any) -> dict[str, Any]:
            return copy.deepcopy(rollout)

    model, tok = lora_model()
    capture = gradient_capture()
    dataset = Dataset.from_dict(
        {
            "prompt": [f"task {i // group_size}" for i in range(rows)],
            "envkit_seed": [i // group_size for i in range(rows)],
        }
    )
    common = dict(
        model=model,
        args=one_step_args(
            out / kind,
            rows=rows,
            group_size=group_size,
            micro_batches=micro_batches,
            loss_type=loss_type,
        ),
        train_dataset=dataset,
        processing_class=tok,
        callbacks=[capture, *callbacks],
    )
    if kind == "trl":
        trainer = trl.GRPOTrainer(
            reward_funcs=[passthrough_reward],
            rollout_func=lambda prompts, _trainer: copy.deepcopy(rollout),
            **common,
        )
    elif kind == "envkit":
        trainer = TRLBackend(
            episodes=episodes,
            drop_zero_signal=drop_zero_signal,
            **(backend_kwargs or {}),
            **common,
        )
    else:
        raise ValueError(f"kind must be 'envkit' or 'trl', got {kind!r}")
    if setup is not None:
        setup(trainer)
    trainer.train()
    assert capture.grads, "no gradient was captured: the step did not reach the optimizer"
    return capture.grads


def run_two_processes(script: Path, *args: str, timeout: float) -> None:
    """Runs ``script`` in 2 gloo processes with ``torch.distributed.run`` (as ``accelerate
    launch`` does) and fails the test unless both succeed.

    Args:
        script: The script each process runs (its folder, this one, is on ``PYTHONPATH``).
        *args: The script's arguments.
        timeout: Seconds before the launch is stopped.
    """
    here = Path(__file__).parent
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(here) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


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
