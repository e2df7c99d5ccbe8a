"""GPU throughput: seconds per step and tokens/s of ``envkit train`` vs plain ``trl.GRPOTrainer``.

Run: ``python benchmarks/bench_train_gpu.py`` on a CUDA machine (it exits with a message
otherwise). Both trainers train the same random-init ~0.4B Llama-architecture model (SmolLM2's
tokenizer and chat template, hidden 1024, 24 layers) with the same LoRA (r16/alpha32,
all-linear), bf16, group size 8 x 8 prompts, 64 new tokens per completion, one turn, on
``Arithmetic-v0`` prompts. The reward is a continuous function of the sampled tokens, so every
group has reward spread and both trainers run the backward pass on every completion (envkit's
dropping of zero-signal groups cannot help it here). Random weights sample until the token
limit, so lengths are equal. Reports the median seconds per step after warm-up steps and
completion tokens per second; goal: envkit >= 1.0x plain TRL.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

EK = {"operators": "+*", "max_turns": 1}
TOKENIZER: str | None = None
"""A saved tokenizer folder (``--tokenizer``); default: the bundled SmolLM2's."""


def even_fraction_ids(ids: list[int]) -> float:
    return sum(1 for t in ids if t % 2 == 0) / max(len(ids), 1)


def model_and_tokenizer() -> tuple[Any, Any]:
    import torch
    from random_llama import random_llama, saved_tokenizer

    from envkit.models import load_model

    if TOKENIZER is not None:
        tok = saved_tokenizer(TOKENIZER)
    else:
        _, tok = load_model("smollm2-135m")  # tokenizer + chat template only
    return random_llama(tok).to("cuda", torch.bfloat16), tok


class StepClock:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.last = 0.0

    def callback(self) -> Any:
        from transformers import TrainerCallback

        clock = self

        class CB(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                import torch

                torch.cuda.synchronize()
                clock.last = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                import torch

                torch.cuda.synchronize()
                clock.times.append(time.perf_counter() - clock.last)

        return CB()


def run_trl(steps: int, prompts: int, group: int, tokens: int) -> list[float]:
    import trl
    from datasets import Dataset
    from peft import LoraConfig

    import envkit

    env = envkit.make_chat_env("Arithmetic-v0", **EK)
    rows = [env.reset(seed=s)[0] for s in range(steps * prompts)]
    model, tok = model_and_tokenizer()

    def reward(completion_ids: list[list[int]], **_: Any) -> list[float]:
        return [even_fraction_ids(ids) for ids in completion_ids]

    args = trl.GRPOConfig(
        output_dir="/tmp/bench_gpu_trl",
        max_steps=steps,
        learning_rate=1e-4,
        per_device_train_batch_size=prompts * group,
        num_generations=group,
        max_completion_length=tokens,
        temperature=1.0,
        beta=0.0,
        logging_steps=1,
        report_to="none",
        bf16=True,
        activation_checkpointing=False,
        save_strategy="no",
        shuffle_dataset=False,
        disable_tqdm=True,
    )
    clock = StepClock()
    trl.GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=args,
        processing_class=tok,
        train_dataset=Dataset.from_dict({"prompt": rows}),
        peft_config=LoraConfig(
            r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
        callbacks=[clock.callback()],
    ).train()
    return clock.times


def run_envkit(steps: int, prompts: int, group: int, tokens: int) -> list[float]:
    from envkit.trainers import GRPOConfig, GRPOTrainer

    def reward(trajectory: Any, **_: Any) -> float:
        return even_fraction_ids([t for c in trajectory.completions for t in c.token_ids or []])

    cfg = GRPOConfig(
        output_dir=f"/tmp/bench_gpu_envkit_{time.time_ns()}",
        max_steps=steps,
        group_size=group,
        groups_per_step=prompts,
        max_new_tokens=tokens,
        temperature=1.0,
        learning_rate=1e-4,
        env_kwargs=EK,
        save_steps=10_000,
        kl_to_base_every=0,
        progress=False,
        save_trajectories=False,
    )
    trainer = GRPOTrainer(model_and_tokenizer(), "Arithmetic-v0", reward=reward, config=cfg)
    clock = StepClock()
    trainer.backend.add_callback(clock.callback())
    trainer.train()
    trainer.close()
    return clock.times


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--tokenizer", help="a saved tokenizer folder (e.g. .gpu/tok)")
    args = parser.parse_args()
    global TOKENIZER
    TOKENIZER = args.tokenizer
    if not torch.cuda.is_available():
        print("bench_train_gpu: no CUDA device; this benchmark needs a GPU (nothing measured)")
        return
    name = torch.cuda.get_device_name(0)
    completions = args.prompts * args.group
    print(f"{name}: {completions} completions x {args.tokens} tokens per step, {args.steps} steps")
    out = {}
    for label, fn in (("plain TRL", run_trl), ("envkit", run_envkit)):
        times = fn(args.steps, args.prompts, args.group, args.tokens)[args.warmup :]
        med = statistics.median(times)
        out[label] = med
        rate = completions * args.tokens / med
        print(f"  {label:<10} {med:6.2f} s/step  {rate:8.0f} completion tokens/s")
    print(f"  => envkit vs plain TRL: {out['plain TRL'] / out['envkit']:.2f}x (goal >= 1.0x)")


if __name__ == "__main__":
    main()
