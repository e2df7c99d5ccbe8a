"""Learning per wall-clock minute: ``envkit train`` vs plain ``trl.GRPOTrainer``, side by side.

Run: ``python benchmarks/bench_train_vs_trl.py --minutes 8`` (CPU; both runs plus evaluation take
about 2 x minutes + 3 min). Same task, model and hyper-parameters in both runs:
SmolLM2-135M-Instruct + LoRA r16/alpha32 on all linear layers, lr 1e-4 constant, 4 tasks x 8
samples per step, <= 32 new tokens, temperature 1.0, ``Arithmetic-v0`` with one-digit + and x,
one turn, reward 1 when the last integer of the answer is the result.

* plain TRL: a dataset of the env's prompts (same seeds) and a reward function that checks the
  answer, trained by ``trl.GRPOTrainer`` (TRL's own generation);
* envkit: ``envkit.trainers.GRPOTrainer`` on the env (envkit's rollout engine and HFPolicy,
  TRL's loss and optimizer underneath).

Each run trains for the same wall-clock budget (model loading excluded) in its own process; with
``--parallel`` both run at once with one torch thread each, so a busy machine slows both alike.
Afterwards the base model and both adapters are evaluated on the same held-out tasks (tasks
whose expression never occurs in training) with the same sampling seed, in one process with
``envkit.trainers.evaluate_adapters``. Prints the train reward per minute of both runs, steps
per minute, held-out accuracy and the peak RSS of both training processes side by side (each
child's ``ru_maxrss``, model loading included); writes ``OUT/curves.png`` and
``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

EK = {"operators": "+*", "min_operand": 0, "max_operand": 9, "max_turns": 1}
EVAL_START = 1_000_000_000


_ENV: list[Any] = []


def task_of(seed: int) -> tuple[str, list[dict[str, Any]], int]:
    """(task id, opening messages, answer) of a seed."""
    import envkit

    if not _ENV:
        _ENV.append(envkit.make_chat_env("Arithmetic-v0", **EK))
    env = _ENV[0]
    obs, _ = env.reset(seed=seed)
    assert env.task is not None
    return str(env.task.id), obs, int(env.task.answer)


def seeds(eval_tasks: int, n_train: int) -> tuple[list[int], list[int]]:
    eval_seeds = list(range(EVAL_START, EVAL_START + eval_tasks))
    held = {task_of(s)[0] for s in eval_seeds}
    train = [s for s in range(100_000) if task_of(s)[0] not in held][:n_train]
    return eval_seeds, train


def clock_callback(minutes: float, rows: list[dict[str, Any]]) -> Any:
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        """Records (elapsed, reward) per step and stops training at the time budget."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t0 = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "reward" in logs:
                rows.append(
                    {
                        "step": state.global_step,
                        "elapsed_s": time.perf_counter() - self.t0,
                        "reward": logs["reward"],
                    }
                )

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if time.perf_counter() - self.t0 > minutes * 60:
                control.should_training_stop = True

    return Clock()


def run_trl(out: Path, minutes: float, train: list[int], threads: int) -> list[dict[str, Any]]:
    import torch
    import trl
    from datasets import Dataset
    from peft import LoraConfig

    from envkit.models import load_model
    from envkit.parsing import last_integer

    torch.set_num_threads(threads)
    tasks = [task_of(s) for s in train]
    data = Dataset.from_dict({"prompt": [t[1] for t in tasks], "answer": [t[2] for t in tasks]})

    def correct(completions: list[Any], answer: list[int], **_: Any) -> list[float]:
        return [
            float(last_integer(c[0]["content"]) == a)
            for c, a in zip(completions, answer, strict=True)
        ]

    model, tok = load_model("smollm2-135m")
    args = trl.GRPOConfig(
        output_dir=str(out / "trl"),
        max_steps=len(train) // 4,
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        per_device_train_batch_size=32,
        num_generations=8,
        max_completion_length=32,
        temperature=1.0,
        beta=0.0,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        save_strategy="no",
        shuffle_dataset=False,
        seed=0,
        disable_tqdm=True,
    )
    rows: list[dict[str, Any]] = []
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=correct,
        args=args,
        train_dataset=data,
        processing_class=tok,
        peft_config=LoraConfig(
            r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
        callbacks=[clock_callback(minutes, rows)],
    )
    trainer.train()
    trainer.save_model(str(out / "trl" / "adapter"))
    return rows


def run_envkit(out: Path, minutes: float, train: list[int], threads: int) -> list[dict[str, Any]]:
    from envkit.trainers import GRPOConfig, GRPOTrainer

    cfg = GRPOConfig(
        output_dir=str(out / "envkit"),
        max_steps=len(train) // 4,
        group_size=8,
        groups_per_step=4,
        max_new_tokens=32,
        temperature=1.0,
        learning_rate=1e-4,
        env_kwargs=EK,
        save_steps=10_000,
        kl_to_base_every=0,
        progress=False,
        torch_threads=threads,
        seed=0,
    )
    trainer = GRPOTrainer("smollm2-135m", "Arithmetic-v0", config=cfg, train_seeds=train)
    rows: list[dict[str, Any]] = []
    trainer.backend.add_callback(clock_callback(minutes, rows))
    trainer.train()
    trainer.close()
    return rows


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (``ru_maxrss``), GiB."""
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 2**20


def child(which: str, out: Path, minutes: float, threads: int, eval_tasks: int) -> None:
    _, train = seeds(eval_tasks, 4 * 2000)
    rows = (run_trl if which == "trl" else run_envkit)(out, minutes, train, threads)
    result = {"rows": rows, "peak_rss_gib": peak_rss_gib()}
    (out / f"{which}.json").write_text(json.dumps(result))


def load_run(path: Path) -> tuple[list[dict[str, Any]], float | None]:
    """(per-step rows, peak RSS in GiB) of a child's result file (old files: rows only)."""
    data = json.loads(path.read_text())
    if isinstance(data, list):
        return data, None
    return data["rows"], data["peak_rss_gib"]


def per_minute(rows: list[dict[str, Any]], minutes: float) -> list[float | None]:
    out = []
    for m in range(int(minutes + 0.999)):
        r = [x["reward"] for x in rows if m * 60 <= x["elapsed_s"] < (m + 1) * 60]
        out.append(sum(r) / len(r) if r else None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--eval-tasks", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_train_vs_trl"))
    parser.add_argument("--parallel", action="store_true", help="run both at once, 1 thread each")
    parser.add_argument("--child", choices=["trl", "envkit"], help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(
            args.child, args.out, args.minutes, args.threads or os.cpu_count() or 1, args.eval_tasks
        )
        return
    args.out.mkdir(parents=True, exist_ok=True)
    threads = 1 if args.parallel else (os.cpu_count() or 1)
    cmd = [
        sys.executable,
        __file__,
        "--minutes",
        str(args.minutes),
        "--out",
        str(args.out),
        "--eval-tasks",
        str(args.eval_tasks),
        "--threads",
        str(threads),
    ]
    procs = []
    for which in ("trl", "envkit"):
        p = subprocess.Popen([*cmd, "--child", which])
        if args.parallel:
            procs.append(p)
        else:
            assert p.wait() == 0, f"{which} run failed"
    for p in procs:
        assert p.wait() == 0, "a run failed"
    report(args)


def report(args: argparse.Namespace) -> None:
    from envkit.metrics import summarize
    from envkit.trainers.adapters import evaluate_adapters

    loaded = {w: load_run(args.out / f"{w}.json") for w in ("trl", "envkit")}
    rows = {w: r for w, (r, _) in loaded.items()}
    peak = {w: p for w, (_, p) in loaded.items()}
    eval_seeds, _ = seeds(args.eval_tasks, 0)
    results = evaluate_adapters(
        "smollm2-135m",
        "Arithmetic-v0",
        {"trl": args.out / "trl" / "adapter", "envkit": args.out / "envkit" / "adapter"},
        seeds=eval_seeds,
        env_kwargs=EK,
        max_new_tokens=32,
        temperature=1.0,
        device="cpu",
    )
    acc = {name: summarize(groups).mean_reward for name, groups in results.items()}
    curves = {w: per_minute(r, args.minutes) for w, r in rows.items()}
    mode = "parallel, 1 thread each" if args.parallel else "sequential"
    print(f"\ntrain reward per wall-clock minute ({mode})")
    print(f"{'minute':>6} {'plain TRL':>10} {'envkit':>10}")
    for m, (a, b) in enumerate(zip(curves["trl"], curves["envkit"], strict=True), start=1):
        print(f"{m:>6} {_f(a):>10} {_f(b):>10}")
    result: dict[str, Any] = {"held_out_accuracy": acc, "eval_tasks": len(eval_seeds), "runs": {}}
    for w, r in rows.items():
        steps = len(r)
        wall = r[-1]["elapsed_s"] if r else float("nan")
        result["runs"][w] = {
            "steps": steps,
            "wall_s": wall,
            "s_per_step": wall / max(steps, 1),
            "reward_last_minute": curves[w][-1],
            "peak_rss_gib": peak[w],
        }
        print(
            f"{w:>8}: {steps} steps in {wall:.0f} s ({wall / max(steps, 1):.1f} s/step), "
            f"held-out accuracy {_f(acc[w])} (base {_f(acc['base'])}), "
            f"peak RSS {_f(peak[w], 2)} GiB"
        )
    ratio = result["runs"]["trl"]["s_per_step"] / result["runs"]["envkit"]["s_per_step"]
    print(
        f"=> envkit steps per minute vs plain TRL: {ratio:.2f}x; held-out accuracy "
        f"{_f(acc['envkit'])} vs {_f(acc['trl'])} (goal: at least as good per minute)"
    )
    print(
        f"=> peak RSS (ru_maxrss of each training process, model loading included): plain TRL "
        f"{_f(peak['trl'], 2)} GiB, envkit {_f(peak['envkit'], 2)} GiB"
    )
    result["steps_per_minute_ratio"] = ratio
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    _plot(rows, args.out / "curves.png")


def _f(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _plot(rows: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, label in (("trl", "plain trl.GRPOTrainer"), ("envkit", "envkit train")):
        xs = [r["elapsed_s"] / 60 for r in rows[name]]
        ys = [r["reward"] for r in rows[name]]
        w = 5
        smooth = [
            sum(ys[max(0, i - w + 1) : i + 1]) / len(ys[max(0, i - w + 1) : i + 1])
            for i in range(len(ys))
        ]
        ax.plot(xs, smooth, label=f"{label} (5-step mean)")
    ax.set_xlabel("wall-clock minutes")
    ax.set_ylabel("train reward")
    ax.set_title("SmolLM2-135M + LoRA on Arithmetic-v0 (+, x; one digit)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"curves: {path}")


if __name__ == "__main__":
    main()
