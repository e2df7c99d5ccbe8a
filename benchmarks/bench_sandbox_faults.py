"""Fault injection: 500 ``PythonTools-v0`` episodes with killed containers and exec timeouts.

Run: ``python benchmarks/bench_sandbox_faults.py`` (a minute or two; needs the Docker daemon and
the sandbox image). Episodes run through ``envkit.rollout.collect`` (concurrency 8, a pool of 8
sandboxes). A plan drawn from a seeded generator injects, per episode:

* ``kill`` (10 %): the episode's container is killed (``docker kill``) just before its first
  command, as an OOM kill of the whole container or a crashed node would;
* ``timeout`` (10 %): the first command sleeps past its 1 s timeout (the sandbox kills it);
* nothing otherwise: the episode lists its files and submits.

Checked at the end: every killed episode is recorded as ``infra_error`` with the reason, no other
episode is, every timeout was reported to the model and its episode finished normally, and no
container is left: goal leaked = 0, unreported infra errors = 0.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections import Counter
from typing import Any, ClassVar

import numpy as np

from envkit.environments.python_tools import PythonToolsEnv
from envkit.policies import CallablePolicy
from envkit.rollout import collect
from envkit.sandbox import reaper
from envkit.sandbox.docker_client import docker_client
from envkit.sandbox.pool import SandboxPool
from envkit.types import ToolCall


class FaultyToolsEnv(PythonToolsEnv):
    """PythonTools-v0 whose first ``run_shell`` of an episode obeys the fault plan."""

    plan: ClassVar[dict[int, str]] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self.fault = self.plan.get(seed or 0, "none")
        return super().reset(seed=seed, options=options)

    async def _faulty_shell(self, command: str) -> str:
        fault, self.fault = self.fault, "none"
        if fault == "kill":
            (await self.asandbox()).kill()
        elif fault == "timeout":
            command = "sleep 30"
        return await PythonToolsEnv.run_shell.fn(self, command)


def policy(messages: list[dict[str, Any]], tools: Any) -> dict[str, Any]:
    turn = sum(m["role"] == "assistant" for m in messages)
    name, args = (
        ("run_shell", {"command": "ls -R /work | head"})
        if turn == 0
        else ("submit", {"answer": "42"})
    )
    call = ToolCall.create(name, args, id=f"call_{turn}")
    return {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("ENVKIT_SANDBOX_RUN_ID", f"bench-faults-{uuid.uuid4().hex[:8]}")
    run = os.environ["ENVKIT_SANDBOX_RUN_ID"]
    rng = np.random.default_rng(0)
    FaultyToolsEnv.plan = {
        s: str(rng.choice(["kill", "timeout", "none"], p=[0.1, 0.1, 0.8]))
        for s in range(args.episodes)
    }
    injected = Counter(FaultyToolsEnv.plan.values())

    with SandboxPool(size=args.concurrency) as pool:

        def factory() -> FaultyToolsEnv:
            env = FaultyToolsEnv(pool=pool, tool_timeout=1.0)
            # the env's run_shell tool obeys the plan (same schema, same dispatch)
            env.toolbox.tools["run_shell"].fn = env._faulty_shell
            return env

        t0 = time.perf_counter()
        groups = collect(
            factory,
            CallablePolicy(policy),
            seeds=list(range(args.episodes)),
            concurrency=args.concurrency,
            progress=False,
        )
        elapsed = time.perf_counter() - t0
        stats = pool.stats.as_dict()
    trajs = [t for g in groups for t in g]
    outcomes = Counter(t.outcome for t in trajs)
    by_seed = {t.seed: t for t in trajs}
    unreported = [
        s
        for s, f in FaultyToolsEnv.plan.items()
        if f == "kill" and by_seed[s].outcome != "infra_error"
    ]
    wrongly_blamed = [
        s
        for s, f in FaultyToolsEnv.plan.items()
        if f != "kill" and by_seed[s].outcome == "infra_error"
    ]
    timeouts_reported = sum(
        1
        for s, f in FaultyToolsEnv.plan.items()
        if f == "timeout"
        and by_seed[s].outcome == "ok"
        and any("timed out" in (m.content or "") for m in by_seed[s].messages if m.role == "tool")
    )
    reasons = Counter((t.error or "").split(":")[0] for t in trajs if t.outcome == "infra_error")
    time.sleep(1)  # Docker's AutoRemove of killed containers is asynchronous
    leaked = len(reaper.list_containers(docker_client(), run=run))

    print(
        f"{args.episodes} episodes in {elapsed:.1f} s ({args.episodes / elapsed:.1f}/s), "
        f"concurrency {args.concurrency}"
    )
    print(f"  injected: {dict(injected)}")
    print(f"  outcomes: {dict(outcomes)}")
    print(f"  infra_error reasons: {dict(reasons)}")
    print(f"  pool: {stats}")
    print(
        f"  killed containers reported as infra_error: "
        f"{injected['kill'] - len(unreported)}/{injected['kill']} (unreported: {len(unreported)}, "
        f"goal 0)"
    )
    print(f"  episodes wrongly blamed on infrastructure: {len(wrongly_blamed)} (goal 0)")
    print(
        f"  exec timeouts reported to the model, episode finished: "
        f"{timeouts_reported}/{injected['timeout']}"
    )
    print(f"  leaked containers: {leaked} (goal 0)")


if __name__ == "__main__":
    main()
