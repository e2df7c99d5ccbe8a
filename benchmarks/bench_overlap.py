"""Overlapped rollouts vs synchronous training with a slow, sandboxed environment.

Run: ``python benchmarks/bench_overlap.py`` (CPU; needs bubblewrap for the local sandbox; about
``2 x steps x (step time)`` plus model loading and evaluation). The same run twice, one after
the other: ``Arithmetic-v0`` (one-digit + and x, one turn) wrapped so that every env step first
waits on a sandboxed tool (``sleep S`` executed in the episode's own ``LocalSandbox``: a test
suite, a build, a network call), trained with ``envkit.trainers.GRPOTrainer``:

* synchronous (``max_staleness=0``): play step t's episodes, then train step t;
* overlapped (``max_staleness=1``): step t+1's episodes are played (and wait on their sandboxes)
  while step t trains, with the adapter one update old; the loss is importance-weighted
  (truncated IS, ``importance_sampling="token_truncate"``).

``--tool-wait`` S is sized so that an episode waits about as long as an optimizer step takes.
Prints steps per minute of both runs (training only, model loading and evaluation excluded),
the ratio (goal >= 1.5x), the mean train reward of the last steps and the held-out reward of
both adapters (same held-out seeds and sampling seed), and writes ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

EK: dict[str, Any] = {"operators": "+*", "min_operand": 0, "max_operand": 9, "max_turns": 1}
TOOL_WAIT = 12.0


def slow_env(**kwargs: Any) -> Any:
    """An ``ArithmeticEnv`` whose every step first runs ``sleep TOOL_WAIT`` in a sandbox."""
    from envkit.environments.arithmetic import ArithmeticEnv
    from envkit.sandbox.local_sandbox import LocalSandbox

    class SandboxedWaitEnv(ArithmeticEnv):
        step_in_thread = True  # ArithmeticEnv answers on the loop; this step blocks on a tool
        _sandbox: Any = None

        def step(self, action: Any) -> Any:
            if self._sandbox is None:
                self._sandbox = LocalSandbox()
            result = self._sandbox.exec(f"sleep {TOOL_WAIT}", timeout=TOOL_WAIT + 60)
            if result.exit_code != 0:
                raise RuntimeError(f"sandboxed tool failed: {result}")
            return super().step(action)

        def close(self) -> None:
            if self._sandbox is not None:
                self._sandbox.close()
                self._sandbox = None
            super().close()

    return SandboxedWaitEnv(**kwargs)


def run(
    model: str, steps: int, staleness: int, out: Path, eval_n: int, threads: int | None
) -> dict[str, Any]:
    from envkit.trainers import GRPOConfig, GRPOTrainer
    from envkit.trainers.run_dir import RunDir

    config = GRPOConfig(
        output_dir=str(out),
        max_steps=steps,
        group_size=8,
        groups_per_step=2,
        max_new_tokens=32,
        temperature=1.0,
        learning_rate=1e-4,
        env_kwargs=EK,
        save_steps=steps,
        kl_to_base_every=0,
        progress=False,
        seed=0,
        max_staleness=staleness,
        eval_episodes=eval_n,
        torch_threads=threads,
    )
    with GRPOTrainer(model, slow_env, config=config) as trainer:
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        held_out = trainer.evaluate()
    rows = [r for r in RunDir(out).read_metrics() if r["kind"] == "train"]
    last = rows[-3:]
    rewards = [t.reward or 0.0 for g in held_out for t in g]
    return {
        "max_staleness": staleness,
        "steps": steps,
        "seconds": seconds,
        "steps_per_min": 60 * steps / seconds,
        "train_reward_first3": sum(r["reward/mean"] for r in rows[:3]) / len(rows[:3]),
        "train_reward_last3": sum(r["reward/mean"] for r in last) / len(last),
        "held_out_reward": sum(rewards) / len(rewards),
        "held_out_n": len(rewards),
        "rollout_s_mean": sum(r.get("time/rollout_s", 0.0) for r in rows) / len(rows),
        # How long the trainer waited for each step's episodes (overlapped runs only).
        "rollout_wait_s_mean": sum(r.get("time/rollout_wait_s", 0.0) for r in rows) / len(rows),
        "step_s_mean": sum(r.get("time/step_s", 0.0) for r in rows) / len(rows),
        "staleness_mean": sum(r.get("staleness/mean", 0.0) for r in rows) / len(rows),
        "is_ratio_mean": [round(r["is/ratio_mean"], 4) for r in rows if "is/ratio_mean" in r],
    }


def main() -> None:
    global TOOL_WAIT
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--tool-wait", type=float, default=TOOL_WAIT)
    parser.add_argument("--eval-episodes", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch CPU threads of both runs (default: torch's choice; with overlap, sampling "
        "and training then compete for the same cores)",
    )
    args = parser.parse_args()
    TOOL_WAIT = args.tool_wait
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-overlap-"))
    results = {}
    for name, staleness in (("synchronous", 0), ("overlapped", 1)):
        results[name] = run(
            args.model, args.steps, staleness, out / name, args.eval_episodes, args.torch_threads
        )
        print(name, json.dumps(results[name]), flush=True)
    sync, over = results["synchronous"], results["overlapped"]
    ratio = over["steps_per_min"] / sync["steps_per_min"]
    print(
        f"\nmodel {args.model}, {args.steps} steps of 2 tasks x 8 episodes, every env step waits "
        f"{args.tool_wait:g} s on a sandboxed tool, torch threads {args.torch_threads or 'auto'}\n"
        f"synchronous:  {sync['steps_per_min']:.2f} steps/min, train reward (last 3 steps) "
        f"{sync['train_reward_last3']:.3f}, held-out {sync['held_out_reward']:.3f} "
        f"(n={sync['held_out_n']})\n"
        f"max_staleness=1: {over['steps_per_min']:.2f} steps/min, train reward (last 3 steps) "
        f"{over['train_reward_last3']:.3f}, held-out {over['held_out_reward']:.3f} "
        f"(n={over['held_out_n']})\n"
        f"speed-up: {ratio:.2f}x (goal >= 1.5x)"
    )
    results["ratio"] = ratio  # type: ignore[assignment]
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
