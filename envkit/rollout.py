"""Async rollouts: run many episodes of a ``ChatEnv`` against a policy at once.

``collect`` runs ``group_size`` episodes per seed (a GRPO group: same task, independent samples)
with up to ``concurrency`` episodes in flight; env steps (in worker threads, or natively async)
and policy calls of all episodes overlap. A failure is recorded on its trajectory, never raised:
``outcome`` says whether the env, the policy, the infrastructure or the timeout ended it, and
``reward`` is ``None`` for those episodes (never a silent 0).

Example:
    >>> import envkit
    >>> from envkit.policies import CallablePolicy
    >>> policy = CallablePolicy(lambda messages, tools: "12")
    >>> groups = envkit.collect("Arithmetic-v0", policy, seeds=[0, 1], group_size=2,
    ...                         progress=False)
    >>> [len(g) for g in groups], groups[0][0].outcome
    ([2, 2], 'truncated')
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from envkit._async import run_sync
from envkit.env_pool import EnvPool, EnvSource
from envkit.episode_runner import EpisodeRunner
from envkit.policies.base import Policy
from envkit.progress import RolloutProgress
from envkit.types import Trajectory, TrajectoryGroup

if TYPE_CHECKING:
    from envkit.gateway.server import Gateway

__all__ = ["EnvPool", "acollect", "collect"]

# The names these had when they lived here (the Ray backend and older code import them).
_Runner = EpisodeRunner
_Progress = RolloutProgress


async def acollect(
    env: EnvSource,
    policy: Policy,
    *,
    seeds: Sequence[int | None],
    group_size: int = 1,
    concurrency: int = 32,
    options: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    episode_timeout: float | None = None,
    jsonl_path: str | Path | None = None,
    progress: bool | None = None,
    backend: Literal["local", "ray"] = "local",
    ray_address: str | None = None,
    gateway: Gateway | None = None,
) -> list[TrajectoryGroup]:
    """Runs ``group_size`` episodes for each seed and returns one group per seed, in order.

    Args:
        env: An env id (``"envkit/Arithmetic-v0"`` or ``"Arithmetic-v0"``), a factory returning
            a ``ChatEnv``, or an env instance (made with ``gymnasium.make``, more instances are
            made from its spec; an unregistered instance runs one episode at a time).
        policy: Produces the assistant turns (see ``envkit.policies``).
        seeds: One task per seed; the same seed gives the same task.
        group_size: Episodes per seed (GRPO's group size).
        concurrency: Most episodes in flight at once (and most env instances).
        options: Passed to every ``env.reset``.
        env_kwargs: Keyword arguments for making each env (with an id or a factory).
        episode_timeout: Seconds after which an episode is stopped (``outcome="timeout"``).
        jsonl_path: If given, each finished group is appended to this JSONL file at once.
        progress: Show a rich progress bar (default: when stderr is a terminal).
        backend: ``"local"``: in this process; ``"ray"``: on every node of a Ray cluster, each
            with its own envs and sandbox pool (``pip install 'envkit-rl[ray]'``; see
            ``envkit.ray_rollout``). ``concurrency`` is then the total over the cluster.
        ray_address: The Ray cluster to use with ``backend="ray"`` (``"host:6379"``; ``None``:
            ``$RAY_ADDRESS``, the latest local cluster, else a new local one).
        gateway: For an ``envkit.AgentEnv``: the ``envkit.gateway.Gateway`` its agents call
            (left open, e.g. the trainer's, whose upstream then samples instead of ``policy``).
            ``None``: one over ``policy`` is started on the first agent episode and closed
            before ``acollect`` returns; its session files go beside ``jsonl_path``
            (``<name>.sessions/``), or to a temp dir removed at the end without one.
            ``backend="local"`` only: on Ray each worker starts its own gateway over its copy
            of the policy and closes it when the collect ends (session files in a temp dir on
            that worker's node, removed then; see ``envkit.ray_rollout``).

    Returns:
        One ``TrajectoryGroup`` per seed, trajectories ordered by ``group_index``.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if episode_timeout is not None and episode_timeout <= 0:
        raise ValueError(f"episode_timeout must be positive or None, got {episode_timeout}")
    if not isinstance(policy, Policy):
        raise TypeError(
            f"policy must implement envkit.policies.Policy (async agenerate(requests)); got "
            f"{type(policy).__name__}. Wrap a function with envkit.policies.CallablePolicy."
        )
    seeds = list(seeds)
    if progress is None:
        import sys

        progress = sys.stderr.isatty()
    if backend == "ray":
        if gateway is not None:
            raise ValueError(
                "gateway= is for local rollouts; on Ray each worker starts its own gateway over "
                "its copy of the policy (pass a policy that travels, such as a ServerPolicy, and "
                "leave gateway unset)"
            )
        from envkit.ray_rollout import acollect_ray

        return await acollect_ray(
            env,
            policy,
            seeds=seeds,
            group_size=group_size,
            concurrency=concurrency,
            options=options,
            env_kwargs=env_kwargs,
            episode_timeout=episode_timeout,
            jsonl_path=jsonl_path,
            progress=progress,
            ray_address=ray_address,
        )
    if backend != "local":
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    if ray_address is not None:
        raise ValueError("ray_address is only used with backend='ray'")
    pool = EnvPool(env, concurrency, env_kwargs)
    out_path = Path(jsonl_path) if jsonl_path is not None else None
    sessions = out_path.with_name(out_path.stem + ".sessions") if out_path is not None else None
    runner = EpisodeRunner(
        pool, policy, options, episode_timeout, gateway=gateway, gateway_log_dir=sessions
    )
    groups = [TrajectoryGroup(env_id=pool.env_id, seed=s, trajectories=[]) for s in seeds]
    remaining = [group_size] * len(seeds)
    bar = RolloutProgress(progress, len(seeds) * group_size, pool.env_id)
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text("")

    # ``concurrency`` workers pull episodes in order: cheaper than one task per episode all
    # waiting on a semaphore (that costs ~20 us per episode).
    jobs = iter([(gi, k) for gi in range(len(seeds)) for k in range(group_size)])

    async def worker() -> None:
        for gi, k in jobs:  # one shared iterator; the event loop runs one worker at a time
            finish(gi, await runner.episode(seeds[gi], k))

    def finish(gi: int, traj: Trajectory) -> None:
        groups[gi].trajectories.append(traj)
        bar.update(traj)
        remaining[gi] -= 1
        if remaining[gi] == 0:
            group = groups[gi]
            group.trajectories.sort(key=lambda t: t.group_index)
            group.task_id = group.trajectories[0].task_id
            if out_path is not None:
                with out_path.open("a", encoding="utf-8") as f:
                    f.write(group.model_dump_json() + "\n")

    try:
        await asyncio.gather(*(worker() for _ in range(min(pool.size, len(seeds) * group_size))))
    finally:
        bar.close()
        await runner.aclose()
        await pool.aclose()
    return groups


def collect(
    env: EnvSource,
    policy: Policy,
    *,
    seeds: Sequence[int | None],
    group_size: int = 1,
    concurrency: int = 32,
    options: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    episode_timeout: float | None = None,
    jsonl_path: str | Path | None = None,
    progress: bool | None = None,
    backend: Literal["local", "ray"] = "local",
    ray_address: str | None = None,
    gateway: Gateway | None = None,
) -> list[TrajectoryGroup]:
    """Synchronous ``acollect`` (see there); works inside a running event loop too."""
    return run_sync(
        acollect(
            env,
            policy,
            seeds=seeds,
            group_size=group_size,
            concurrency=concurrency,
            options=options,
            env_kwargs=env_kwargs,
            episode_timeout=episode_timeout,
            jsonl_path=jsonl_path,
            progress=progress,
            backend=backend,
            ray_address=ray_address,
            gateway=gateway,
        )
    )
