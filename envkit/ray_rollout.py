"""Rollouts on a Ray cluster: ``collect(..., backend="ray")`` plays the episodes on every node.

One Ray actor per node (``workers_per_node`` to have more) owns that node's env instances and,
through them, its own process-wide ``SandboxPool``; it plays whole groups with the local async
engine (``envkit.episode_runner.EpisodeRunner``), so an episode behaves exactly as with
``backend="local"``.
The driver hands out groups to the least busy actor and collects them as they
finish (``astream_ray`` yields them in that order; ``acollect`` returns them in seed order).

Failure semantics: a group whose actor died (its process was killed, its node left the cluster:
``ActorDiedError``, ``WorkerCrashedError``, ``NodeDiedError``, ``OwnerDiedError``...) becomes
``group_size`` trajectories with ``outcome="infra_error"`` and the Ray error text, the dead actor
gets no more work, and the batch goes on with the others (``max_retries=N`` replays such a group
up to N times on a live actor instead). Sandboxes: each actor closes its pools when the collect
ends, and a clean-up task on every node then removes the containers of this run whose owner
process is gone (those of a killed actor), see ``envkit.sandbox.reaper.reap``.

Policies travel to the actors by pickling: use one that holds no model in memory, such as
``ServerPolicy`` (an OpenAI-compatible inference server) or ``LiteLLMPolicy``.

Ray calls followed: ``ray.init(address=...)``, async actors, ``NodeAffinitySchedulingStrategy``
(https://docs.ray.io/en/latest/ray-core/api/doc/ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy.html),
``ray.wait``, ``runtime_env={"env_vars": ...}`` and the fault-tolerance exceptions of
``ray.exceptions`` (https://docs.ray.io/en/latest/ray-core/fault-tolerance.html).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

from envkit.policies.base import Policy
from envkit.types import Trajectory, TrajectoryGroup

__all__ = ["RAY_METRIC_NODE", "RAY_METRIC_PID", "acollect_ray", "astream_ray", "import_ray"]

RAY_METRIC_NODE = "ray_node_id"
"""The ``Trajectory.metrics`` key holding the Ray node id (hex) the episode ran on."""
RAY_METRIC_PID = "ray_worker_pid"
"""The ``Trajectory.metrics`` key holding the pid of the actor process that played it."""

_START_TIMEOUT_S = 300.0
"""Seconds an actor may take to start (a fresh worker process, its runtime_env)."""
_FORWARD_PREFIXES = ("ENVKIT_", "LITELLM_", "HF_", "OPENAI_")
_FORWARD_SUFFIXES = ("_API_KEY", "_API_BASE", "_BASE_URL")
_FORWARD_NAMES = ("TOKENIZERS_PARALLELISM", "PYTHONHASHSEED")


def import_ray() -> Any:
    """Imports ``ray``, or says how to install it.

    >>> import_ray().__name__
    'ray'
    """
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            "backend='ray' needs Ray: pip install 'envkit-rl[ray]' (or pip install 'ray>=2.40')"
        ) from e
    return ray


def _lost_work_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """The Ray errors that mean the work was lost with its process or node, not a bug of ours."""
    ex = ray.exceptions
    names = (
        "RayActorError",  # ActorDiedError, ActorUnavailableError
        "WorkerCrashedError",
        "NodeDiedError",
        "ObjectLostError",  # OwnerDiedError, ObjectReconstructionFailedError...
        "LocalRayletDiedError",
        "OutOfMemoryError",
        "TaskCancelledError",
    )
    return tuple(getattr(ex, n) for n in names if hasattr(ex, n))


def forwarded_env_vars(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The driver's environment variables the Ray workers get (``runtime_env["env_vars"]``).

    ``ENVKIT_*`` (the sandbox run id among them), ``LITELLM_*``, ``HF_*``, ``OPENAI_*``,
    ``*_API_KEY``/``*_API_BASE``/``*_BASE_URL`` and ``TOKENIZERS_PARALLELISM``, plus ``extra``.

    >>> "ENVKIT_SANDBOX_RUN_ID" in forwarded_env_vars()
    True
    """
    from envkit.sandbox import reaper

    out = {
        k: v
        for k, v in os.environ.items()
        if k.startswith(_FORWARD_PREFIXES) or k.endswith(_FORWARD_SUFFIXES) or k in _FORWARD_NAMES
    }
    out["ENVKIT_SANDBOX_RUN_ID"] = reaper.run_id()  # one run id on every node: one clean-up
    out.update(extra or {})
    return out


def _check_policy(policy: Policy, ray: Any) -> Any:
    """Puts the policy in the object store once; refuses one that holds a model in memory."""
    holds_model = type(policy).__module__.startswith("envkit.policies.hf")
    torch = sys.modules.get("torch")
    if torch is not None and not holds_model:
        holds_model = any(isinstance(v, torch.nn.Module) for v in vars(policy).values())
    why = "it holds a torch model in memory" if holds_model else ""
    if not why:
        try:
            ray.cloudpickle.dumps(policy)  # its error is one line; ray.put's is a page
        except Exception as e:
            why = f"it cannot be pickled ({type(e).__name__}: {e})"
        else:
            return ray.put(policy)
    raise TypeError(
        f"backend='ray' sends the policy to every node by pickling, and {type(policy).__name__} "
        f"cannot travel: {why}. Serve the model with an OpenAI-compatible inference server and "
        "use envkit.policies.ServerPolicy, or use LiteLLMPolicy"
    )


def _env_for_workers(env: Any) -> Any:
    """What the actors build their envs from: an id or a factory, never a live instance."""
    if isinstance(env, gym.Env):
        spec = env.spec or getattr(env.unwrapped, "spec", None)
        if spec is None:
            raise TypeError(
                "backend='ray' needs an env id or a factory (the actors make their own "
                f"instances); got an unregistered {type(env.unwrapped).__name__} instance"
            )
        return spec.id
    return env


def _connect(ray: Any, address: str | None, env_vars: dict[str, str]) -> None:
    if ray.is_initialized():
        return  # the caller's connection (and its runtime_env) stays as it is
    if address and not address.startswith(("ray://", "auto", "local")):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5):
                pass
        except (OSError, ValueError) as e:
            raise ConnectionError(
                f"no Ray cluster answers at ray_address={address!r} ({e}); start one with "
                "`ray start --head --port 6379` and pass its GCS address 'host:6379', or "
                "ray_address=None to start a local one"
            ) from None
    ray.init(
        address=address,
        runtime_env={"env_vars": env_vars},
        log_to_driver=False,
        logging_level="WARNING",
        configure_logging=False,
    )


class _Worker:
    """A Ray actor (async): plays groups with the local engine; its envs live for the collect."""

    def __init__(
        self,
        env: Any,
        env_kwargs: dict[str, Any] | None,
        policy: Policy,
        options: dict[str, Any] | None,
        episode_timeout: float | None,
        concurrency: int,
    ) -> None:
        import ray

        self._args = (env, env_kwargs, policy, options, episode_timeout, concurrency)
        self._runner: Any = None
        self._slots: asyncio.Semaphore | None = None
        self.node_id: str = ray.get_runtime_context().get_node_id()
        self.pid = os.getpid()

    async def info(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "pid": self.pid, "host": socket.gethostname()}

    async def play(self, seed: int | None, indices: list[int]) -> list[Trajectory]:
        from envkit.env_pool import EnvPool
        from envkit.episode_runner import EpisodeRunner

        if self._runner is None:
            env, env_kwargs, policy, options, episode_timeout, concurrency = self._args
            pool = EnvPool(env, concurrency, env_kwargs)
            self._runner = EpisodeRunner(pool, policy, options, episode_timeout)
            # At most ``concurrency`` episodes hold an env: one never waits on the pool's queue
            # (a broken env's slot frees no queue entry), as in the local engine's workers.
            self._slots = asyncio.Semaphore(concurrency)

        async def one(k: int) -> Trajectory:
            assert self._slots is not None
            async with self._slots:
                return await self._runner.episode(seed, k)

        trajs = await asyncio.gather(*(one(k) for k in indices))
        for t in trajs:
            t.metrics[RAY_METRIC_NODE] = self.node_id
            t.metrics[RAY_METRIC_PID] = self.pid
        return list(trajs)

    async def close(self) -> None:
        """Closes the envs, then this process's sandbox pools (their containers go)."""
        from envkit._async import to_thread
        from envkit.sandbox.pool import close_shared_pools

        if self._runner is not None:
            await self._runner.pool.aclose()
        await to_thread(close_shared_pools)


def _reap_node(run: str, pids: list[int], wait_s: float) -> list[str]:
    """A Ray task on one node: waits for the given (killed) actor pids to exit, then removes
    this run's containers whose owner process is gone. Returns their names."""
    deadline = time.monotonic() + wait_s
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                pass
            time.sleep(0.05)
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception:
        return []  # no Docker on this node: nothing to reap
    from envkit.sandbox import reaper

    try:
        return reaper.reap(client, run=run)
    finally:
        client.close()


def _infra_group_trajs(
    env_id: str, seed: int | None, indices: list[int], error: str, actor: dict[str, Any]
) -> list[Trajectory]:
    return [
        Trajectory(
            env_id=env_id,
            seed=seed,
            group_index=k,
            outcome="infra_error",
            error=error,
            metrics={RAY_METRIC_NODE: actor["node_id"], RAY_METRIC_PID: actor["pid"]},
        )
        for k in indices
    ]


async def astream_ray(
    env: Any,
    policy: Policy,
    *,
    seeds: Sequence[int | None],
    group_size: int = 1,
    concurrency: int = 32,
    options: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    episode_timeout: float | None = None,
    ray_address: str | None = None,
    workers_per_node: int = 1,
    max_retries: int = 0,
    env_vars: dict[str, str] | None = None,
) -> AsyncIterator[tuple[int, TrajectoryGroup]]:
    """Plays the episodes on a Ray cluster; yields ``(seed index, group)`` as groups finish.

    Args:
        env, policy, seeds, group_size, options, env_kwargs, episode_timeout: As for
            ``envkit.rollout.acollect``; ``env`` must be an id, a registered instance (its id
            is used) or a picklable factory, and ``policy`` must pickle (see module docs).
        concurrency: Most episodes in flight over the whole cluster, split evenly among the
            actors (each has at least one).
        ray_address: The cluster's address (``"host:6379"``, ``"ray://host:10001"``, ``"auto"``);
            ``None``: ``$RAY_ADDRESS``, the latest local cluster, else a new local one. Ignored
            when Ray is already initialized in this process.
        workers_per_node: Actors per alive node (each one process with its own envs and pool).
        max_retries: Times a group lost with its actor is replayed on a live actor (default 0:
            its episodes become ``infra_error`` trajectories).
        env_vars: More environment variables for the workers (see ``forwarded_env_vars``).
    """
    ray = import_ray()
    from envkit.env_pool import EnvPool
    from envkit.sandbox import reaper

    if workers_per_node < 1:
        raise ValueError(f"workers_per_node must be >= 1, got {workers_per_node}")
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries}")
    source = _env_for_workers(env)
    env_id = EnvPool(source, 1, env_kwargs).env_id  # an unknown id fails here, on the driver
    seeds = list(seeds)
    forwarded = forwarded_env_vars(env_vars)
    await asyncio.to_thread(_connect, ray, ray_address, forwarded)
    policy_ref = _check_policy(policy, ray)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    n_actors = len(nodes) * workers_per_node
    per_actor = max(1, math.ceil(concurrency / n_actors))
    actor_cls = ray.remote(_Worker)
    actors = [
        actor_cls.options(
            num_cpus=0,
            max_restarts=0,
            max_concurrency=max(1000, 2 * per_actor),
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
            runtime_env={"env_vars": forwarded},
        ).remote(source, env_kwargs, policy_ref, options, episode_timeout, per_actor)
        for node in nodes
        for _ in range(workers_per_node)
    ]
    lost = _lost_work_errors(ray)
    infos: list[dict[str, Any] | None] = []
    start_errors: list[str] = []
    for i, ref in enumerate([a.info.remote() for a in actors]):
        try:  # a node whose worker cannot start in time (runtime_env set-up...) is left out
            infos.append(await asyncio.to_thread(ray.get, ref, timeout=_START_TIMEOUT_S))
        except (*lost, ray.exceptions.GetTimeoutError) as e:
            ray.kill(actors[i], no_restart=True)
            infos.append(None)
            start_errors.append(f"{type(e).__name__}: {e}")
    live = [i for i, info in enumerate(infos) if info is not None]
    if not live:
        for a in actors:
            ray.kill(a, no_restart=True)
        raise RuntimeError(
            f"no Ray worker could start ({len(actors)} tried); the first error: {start_errors[0]}"
        )
    # Groups in flight per actor: enough to keep its ``per_actor`` episode slots busy.
    slots = math.ceil(per_actor / group_size) + 1
    todo = [(gi, 0) for gi in range(len(seeds))]  # (seed index, tries so far)
    todo.reverse()
    busy = {i: 0 for i in live}
    # Each in-flight call as an asyncio future of its ObjectRef (``ObjectRef.future()``): the
    # loop wakes when one finishes, no polling. Values: (ref, seed index, actor, tries).
    inflight: dict[asyncio.Future[Any], tuple[Any, int, int, int]] = {}
    indices = list(range(group_size))
    dead: set[int] = set()
    nobody = {"node_id": None, "pid": None}

    def submit() -> None:
        while todo:
            free = [i for i in busy if i not in dead and busy[i] < slots]
            if not free:
                return
            i = min(free, key=lambda a: busy[a])
            gi, tries = todo.pop()
            ref = actors[i].play.remote(seeds[gi], indices)
            inflight[asyncio.wrap_future(ref.future())] = (ref, gi, i, tries)
            busy[i] += 1

    try:
        submit()
        while inflight or todo:
            if not inflight:  # every actor is dead: what is left cannot run
                error = "RuntimeError: no live Ray worker is left to play this group"
                while todo:
                    gi, _ = todo.pop()
                    trajs = _infra_group_trajs(env_id, seeds[gi], indices, error, nobody)
                    yield gi, _group(env_id, seeds[gi], trajs)
                break
            done, _ = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                _, gi, i, tries = inflight.pop(fut)
                busy[i] -= 1
                try:
                    trajs = fut.result()
                except lost as e:
                    dead.add(i)
                    if tries < max_retries:
                        todo.append((gi, tries + 1))
                        continue
                    text = f"{type(e).__name__} in the Ray worker: {str(e) or repr(e)}"
                    trajs = _infra_group_trajs(env_id, seeds[gi], indices, text, infos[i] or {})
                yield gi, _group(env_id, seeds[gi], trajs)
            submit()
    finally:
        for ref, *_ in list(inflight.values()):
            ray.cancel(ref, force=False)
        closing = {actors[i].close.remote(): i for i in busy if i not in dead}
        closed: set[int] = set()
        if closing:
            ready, _ = await asyncio.to_thread(
                ray.wait, list(closing), num_returns=len(closing), timeout=60
            )
            for ref in ready:
                with contextlib.suppress(Exception):
                    ray.get(ref)
                    closed.add(closing[ref])
        for a in actors:
            ray.kill(a, no_restart=True)
        # Only an actor that did not close its pools (killed, lost, stuck) can leave containers.
        pids_by_node: dict[str, list[int]] = {}
        for i in busy:
            info = infos[i]
            if i not in closed and info is not None:
                pids_by_node.setdefault(info["node_id"], []).append(info["pid"])
        reap = ray.remote(_reap_node)
        alive_now = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        cleanups = [
            reap.options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
                runtime_env={"env_vars": forwarded},
            ).remote(reaper.run_id(), pids, 10.0)
            for node, pids in pids_by_node.items()
            if node in alive_now
        ]
        if cleanups:
            await asyncio.to_thread(ray.wait, cleanups, num_returns=len(cleanups), timeout=60)


def _group(env_id: str, seed: int | None, trajs: list[Trajectory]) -> TrajectoryGroup:
    trajs.sort(key=lambda t: t.group_index)
    return TrajectoryGroup(env_id=env_id, seed=seed, task_id=trajs[0].task_id, trajectories=trajs)


async def acollect_ray(
    env: Any,
    policy: Policy,
    *,
    seeds: Sequence[int | None],
    group_size: int = 1,
    concurrency: int = 32,
    options: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    episode_timeout: float | None = None,
    jsonl_path: str | Path | None = None,
    progress: bool = False,
    ray_address: str | None = None,
    **ray_options: Any,
) -> list[TrajectoryGroup]:
    """``astream_ray`` gathered: one group per seed, in seed order (``acollect``'s contract).

    ``ray_options`` go to ``astream_ray`` (``workers_per_node``, ``max_retries``,
    ``env_vars``).
    """
    from envkit.progress import RolloutProgress

    seeds = list(seeds)
    out: list[TrajectoryGroup | None] = [None] * len(seeds)
    bar = RolloutProgress(progress, len(seeds) * group_size, f"{env} on Ray")
    out_path = Path(jsonl_path) if jsonl_path is not None else None
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text("")
    try:
        async for gi, group in astream_ray(
            env,
            policy,
            seeds=seeds,
            group_size=group_size,
            concurrency=concurrency,
            options=options,
            env_kwargs=env_kwargs,
            episode_timeout=episode_timeout,
            ray_address=ray_address,
            **ray_options,
        ):
            out[gi] = group
            for t in group:
                bar.update(t)
            if out_path is not None:
                with out_path.open("a", encoding="utf-8") as f:
                    f.write(group.model_dump_json() + "\n")
    finally:
        bar.close()
    assert all(g is not None for g in out)
    return [g for g in out if g is not None]
