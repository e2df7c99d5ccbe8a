"""Coding-episode throughput: 32 ``PythonCoding-v0`` episodes, a pool of 8 against serial.

Run: ``python benchmarks/bench_sandbox_episodes.py`` (about a minute; needs the Docker daemon and
the sandbox image). A scripted policy (a ``CallablePolicy`` that knows the task bank) first
submits a wrong solution, reads the feedback, then submits the reference: two graded
submissions per episode, each running the code against the tests in the episode's sandbox.
The same 32 episodes run through ``envkit.rollout.collect`` with ``concurrency=8`` over a warm
pool of 8 sandboxes, and with ``concurrency=1`` over a warm pool of 1; goal >= 4x.

``--policy-latency`` adds a per-turn delay that stands in for an LLM's answer time (the
default, 0, measures the sandbox side alone).
"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

from envkit.environments.coding_tasks import TASKS
from envkit.environments.python_coding import PythonCodingEnv
from envkit.policies import CallablePolicy
from envkit.rollout import collect
from envkit.sandbox.pool import SandboxPool

REFERENCES = {t.function: t.reference for t in TASKS}


def scripted(messages: list[dict[str, Any]], tools: Any) -> str:
    """Wrong first (returns None), then the reference solution of the task in the prompt."""
    function = re.search(r"def (\w+)\(", messages[1]["content"]).group(1)  # type: ignore[union-attr]
    if sum(m["role"] == "assistant" for m in messages) == 0:
        return f"```python\ndef {function}(*args):\n    return None\n```"
    return f"```python\n{REFERENCES[function]}```"


def run(concurrency: int, episodes: int, latency: float) -> tuple[float, list[Any]]:
    with SandboxPool(size=concurrency) as pool:  # warm before the clock starts

        def factory() -> PythonCodingEnv:
            return PythonCodingEnv(pool=pool, max_turns=2)

        t0 = time.perf_counter()
        groups = collect(
            factory,
            CallablePolicy(scripted, delay=latency),
            seeds=list(range(episodes)),
            concurrency=concurrency,
            progress=False,
        )
        elapsed = time.perf_counter() - t0
    return elapsed, [t for g in groups for t in g]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--pool", type=int, default=8)
    parser.add_argument("--policy-latency", type=float, nargs="*", default=[0.0, 0.5])
    args = parser.parse_args()
    for latency in args.policy_latency:
        print(
            f"{args.episodes} coding episodes x 2 graded submissions, policy latency "
            f"{latency:.2f} s/turn"
        )
        serial, trajs_serial = run(1, args.episodes, latency)
        pooled, trajs_pooled = run(args.pool, args.episodes, latency)
        for name, elapsed, trajs in (
            ("serial (pool of 1)", serial, trajs_serial),
            (f"pool of {args.pool}", pooled, trajs_pooled),
        ):
            rewards = [t.reward for t in trajs]
            ok = sum(t.outcome == "ok" for t in trajs)
            print(
                f"  {name:<20} {elapsed:7.2f} s  {args.episodes / elapsed:6.2f} episodes/s  "
                f"outcome ok {ok}/{len(trajs)}  mean reward {sum(rewards) / len(rewards):.2f}"
            )
        print(f"  => pool of {args.pool} vs serial: {serial / pooled:.1f}x throughput (goal >= 4x)")


if __name__ == "__main__":
    main()
