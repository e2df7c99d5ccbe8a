"""Env phase of a GRPO step: a sandboxed multi-turn batch, envkit's engine vs TRL's serial loop.

Run: ``python benchmarks/bench_env_phase.py`` (needs the Docker daemon and the sandbox image,
``envkit sandbox build``). A batch of ``PythonTools-v0`` episodes (default 32, the size of a
GRPO step of 4 tasks x 8 samples) is played by a scripted policy that makes three tool calls
per episode, each executed in the episode's own sandbox: ``run_shell``, ``run_python``, then
``submit``. No model is involved, so the figures are the environment side of a training step.

* envkit: ``envkit.rollout.collect`` with every episode in flight (what ``envkit train`` does);
* TRL-style: the order in which TRL 1.16's ``environment_factory`` path drives environments
  (``GRPOTrainer._generate_and_score_completions`` calls ``reset()`` of each rollout's env one
  after another, and ``_tool_call_loop`` executes the tool calls of one sample after another,
  for every turn of the batch): N env instances, reset serially, then per turn, the episodes'
  steps serially.

Both use a warm sandbox pool of N containers (started before the clock), so the difference is
the engine. ``--tool-wait`` makes each ``run_python`` program also wait that many seconds (a
test suite, a build, a network call: tool time that is waiting, not CPU); with 0 the execs are
pure CPU work of Docker and Python, which a 2-core machine cannot overlap much. Goal: >= 10x.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from envkit.environments.python_tools import PythonToolsEnv
from envkit.policies import CallablePolicy
from envkit.rollout import collect
from envkit.sandbox.pool import SandboxPool
from envkit.types import ToolCall

TOOL_WAIT = 0.0


def script() -> list[tuple[str, dict[str, Any]]]:
    code = (
        "import os, time\n"
        "total = sum(os.path.getsize(os.path.join(r, f)) "
        "for r, _, fs in os.walk('/work') for f in fs)\n"
        f"time.sleep({TOOL_WAIT})\nprint(total)"
    )
    return [
        ("run_shell", {"command": "ls -la /work | head -20 && du -sh /work"}),
        ("run_python", {"code": code}),
        ("submit", {"answer": "42"}),
    ]


TURNS = 3


def action(turn: int) -> dict[str, Any]:
    steps = script()
    name, args = steps[min(turn, len(steps) - 1)]
    call = ToolCall.create(name, json.dumps(args), id=f"call_{turn}")
    return {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]}


def scripted(messages: list[dict[str, Any]], tools: Any) -> dict[str, Any]:
    return action(sum(1 for m in messages if m["role"] == "assistant"))


def run_envkit(pool: SandboxPool, episodes: int) -> tuple[float, list[str]]:
    t0 = time.perf_counter()
    groups = collect(
        lambda: PythonToolsEnv(pool=pool, max_turns=TURNS),
        CallablePolicy(scripted),
        seeds=list(range(episodes)),
        concurrency=episodes,
        progress=False,
    )
    elapsed = time.perf_counter() - t0
    return elapsed, [t.outcome for g in groups for t in g]


def run_serial(pool: SandboxPool, episodes: int) -> tuple[float, list[str]]:
    envs = [PythonToolsEnv(pool=pool, max_turns=TURNS) for _ in range(episodes)]
    outcomes = ["running"] * episodes
    t0 = time.perf_counter()
    try:
        for i, env in enumerate(envs):
            env.reset(seed=i)
        for turn in range(TURNS):
            for i, env in enumerate(envs):
                if outcomes[i] != "running":
                    continue
                _, _, terminated, truncated, _ = env.step(action(turn))
                if terminated or truncated:
                    outcomes[i] = "ok" if terminated else "truncated"
        elapsed = time.perf_counter() - t0
    finally:
        for env in envs:
            env.close()
    return elapsed, outcomes


def main() -> None:
    global TOOL_WAIT
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tool-wait", type=float, nargs="*", default=[0.0, 0.5])
    args = parser.parse_args()
    for wait in args.tool_wait:
        TOOL_WAIT = wait
        bench(args.episodes, args.repeats)


def bench(n: int, repeats: int) -> None:
    print(
        f"{n} PythonTools-v0 episodes x {TURNS} sandboxed tool calls (scripted policy), "
        f"run_python waits {TOOL_WAIT} s"
    )
    with SandboxPool(size=n) as pool:
        run_envkit(pool, n)  # warm-up: start every container, import everything
        best = {"envkit": float("inf"), "serial": float("inf")}
        for _ in range(repeats):
            for name, fn in (("serial", run_serial), ("envkit", run_envkit)):
                elapsed, outcomes = fn(pool, n)
                assert all(o == "ok" for o in outcomes), outcomes
                best[name] = min(best[name], elapsed)
    for name, label in (("serial", "TRL-style serial loop"), ("envkit", "envkit engine")):
        print(f"  {label:<24} {best[name]:7.2f} s  {n * TURNS / best[name]:7.1f} tool calls/s")
    print(f"  => envkit vs TRL-style serial: {best['serial'] / best['envkit']:.1f}x (goal >= 10x)")


if __name__ == "__main__":
    main()
