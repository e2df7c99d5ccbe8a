"""Episodes/s of ``collect(..., backend="ray")`` against the local engine on this one machine.

Run: ``python benchmarks/bench_ray.py`` (a few minutes; the sandboxed row needs the Docker
daemon and the sandbox image, ``--no-sandbox`` skips it). Starts a local Ray instance
(``ray.init(num_cpus=...)``, stopped at the end), then runs the same seeds with the same
deterministic policy through both backends, side by side, best of ``--repeat``:

* ``Arithmetic-v0``: a cheap env (microseconds per step), so the figure is Ray's own overhead:
  actor start-up, pickling the policy and the trajectories, ``ray.wait`` round trips.
* ``PythonTools-v0``: a sandboxed env (one shell command in a Docker sandbox per episode), both
  backends starting with a cold sandbox pool (the Ray actors make theirs at each collect).
* ``1 episode``: the fixed cost of one Ray collect (actors started and stopped every call).

Each case runs three ways: the local engine, ``collect(..., backend="ray")`` (a temporary
``RayRollout`` per call: actors, envs and sandbox pools made and ended each time) and one
``RayRollout`` kept open over the repeats, as the trainer uses it (``reused``; its first
collect, which starts the actors, is a warm-up and not timed).

``--policy-latency S`` makes every turn wait S seconds, as an inference server would.
Ratio = Ray episodes/s / local episodes/s (1.0: no overhead). Results are checked equal.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# A throwaway local instance: no ~/.ray/auth_token left behind (Ray >= 2.5x would then turn
# token auth on for every later `ray start` on this machine).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from envkit.policies import CallablePolicy
from envkit.ray_rollout import RayRollout
from envkit.rollout import collect
from envkit.sandbox.pool import close_shared_pools


def arithmetic(messages: list[dict[str, Any]], tools: Any) -> str:
    """Right when the first operand is even (deterministic)."""
    question = next(m["content"] for m in messages if m["role"] == "user")
    a, op, b = re.findall(r"(-?\d+) ([-+*]) (-?\d+)", question)[0]
    value = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
    return str(value if int(a) % 2 == 0 else value + 1)


def probe(messages: list[dict[str, Any]], tools: Any) -> Any:
    """One ``run_shell`` call in the episode's sandbox, then a (wrong) answer."""
    if not any(m["role"] == "tool" for m in messages):
        call = {"name": "run_shell", "arguments": '{"command": "ls /work | wc -l"}'}
        tool_call = {"id": "c1", "type": "function", "function": call}
        return {"role": "assistant", "tool_calls": [tool_call]}
    return "I do not know."


def key(groups: list[Any]) -> list[Any]:
    return [(t.seed, t.group_index, t.outcome, t.reward, t.messages) for g in groups for t in g]


def timed(
    backend: str | RayRollout,
    env: str,
    fn: Any,
    seeds: list[int],
    group: int,
    conc: int,
    latency: float,
) -> Any:
    close_shared_pools()  # both backends start with a cold sandbox pool
    policy = CallablePolicy(fn, delay=latency)
    t0 = time.perf_counter()
    if isinstance(backend, RayRollout):
        groups = backend.collect(env, policy, seeds=seeds, group_size=group, concurrency=conc)
    else:
        groups = collect(
            env,
            policy,
            seeds=seeds,
            group_size=group,
            concurrency=conc,
            progress=False,
            backend=backend,  # type: ignore[arg-type]
        )
    elapsed = time.perf_counter() - t0
    close_shared_pools()
    return elapsed, groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=256, help="Arithmetic-v0 seeds (x4 each)")
    parser.add_argument("--sandbox-seeds", type=int, default=16, help="PythonTools-v0 (x2)")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-sandbox", action="store_true")
    parser.add_argument(
        "--policy-latency", type=float, default=0.0, help="seconds per turn (stands in for an LLM)"
    )
    args = parser.parse_args()

    import ray

    ray.init(
        num_cpus=args.num_cpus,
        include_dashboard=False,
        object_store_memory=200 * 1024**2,
        log_to_driver=False,
        logging_level="WARNING",
    )
    cases = [("Arithmetic-v0", arithmetic, list(range(args.seeds)), 4, 32)]
    if not args.no_sandbox:
        cases.append(("PythonTools-v0", probe, list(range(args.sandbox_seeds)), 2, 8))
    cases.append(("Arithmetic-v0 (1 episode)", arithmetic, [0], 1, 1))
    rows = []
    latency = args.policy_latency
    try:
        for name, fn, seeds, group, conc in cases:
            env = name.split()[0]
            best: dict[str, float] = {}
            results: dict[str, Any] = {}
            with RayRollout() as reused:
                timed(reused, env, fn, seeds, group, conc, latency)  # warm-up: starts actors
                for _ in range(args.repeat):
                    for backend in ("local", "ray", reused):
                        elapsed, groups = timed(backend, env, fn, seeds, group, conc, latency)
                        label = backend if isinstance(backend, str) else "reused"
                        best[label] = min(best.get(label, float("inf")), elapsed)
                        results[label] = groups
            assert key(results["local"]) == key(results["ray"]), f"{name}: results differ"
            assert key(results["local"]) == key(results["reused"]), f"{name}: results differ"
            n = len(seeds) * group
            rows.append((name, n, best["local"], best["ray"], best["reused"]))
    finally:
        ray.shutdown()
    print(
        f"{'env':28} {'episodes':>8} {'local ep/s':>11} {'ray ep/s':>9} {'ray s':>7} "
        f"{'reused ep/s':>12} {'reused s':>9}"
    )
    for name, n, local, on_ray, reused_s in rows:
        print(
            f"{name:28} {n:8d} {n / local:11.1f} {n / on_ray:9.1f} {on_ray:7.2f} "
            f"{n / reused_s:12.1f} {reused_s:9.3f}"
        )


if __name__ == "__main__":
    main()
