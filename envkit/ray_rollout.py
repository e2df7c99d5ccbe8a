"""Rollouts on a Ray cluster: ``collect(..., backend="ray")`` plays the episodes on every node.

One Ray actor per node (``workers_per_node`` to have more) owns that node's env instances and,
through them, its own process-wide ``SandboxPool``; it plays whole groups with the local async
engine (``envkit.episode_runner.EpisodeRunner``), so an episode behaves exactly as with
``backend="local"``.
The driver hands out groups to the least busy actor and collects them as they
finish (``astream_ray`` yields them in that order; ``acollect`` returns them in seed order).

``RayRollout`` is the backend as an object: its actors, their envs and sandbox pools live until
``close()`` (a trainer keeps one for the whole run), and each ``collect`` only sends the policy
and the seeds. ``collect(..., backend="ray")`` makes a temporary one. An env registered at run
time (``envkit.register``, ``register_dataset``, in a script's ``__main__`` too) travels with the
collect: its registry entry is pickled (cloudpickle: by value when defined in ``__main__``) and
registered on a worker that lacks it. A local Ray instance that the backend started itself
(``ray_address=None`` and no running cluster) is shut down by ``close()``, and the processes the
raylet started (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``), which were seen to
outlive ``ray.shutdown()`` and the Python process (why is not established), are killed.

Failure semantics: a group whose actor died (its process was killed, its node left the cluster:
``ActorDiedError``, ``WorkerCrashedError``, ``NodeDiedError``, ``OwnerDiedError``...) becomes
``group_size`` trajectories with ``outcome="infra_error"`` and the Ray error text, the dead actor
gets no more work, and the batch goes on with the others (``max_retries=N`` replays such a group
up to N times on a live actor instead). Sandboxes: each actor closes its pools when the collect
ends, and a clean-up task on every node then removes the containers of this run whose owner
process is gone (those of a killed actor), see ``envkit.sandbox.reaper.reap``.

Policies travel to the actors by pickling: use one that holds no model in memory, such as
``ServerPolicy`` (an OpenAI-compatible inference server) or ``LiteLLMPolicy``. A worker that
cannot load what a collect sends (a module it cannot import) makes the collect raise at once,
naming the error and the remedies.

Agent envs (``envkit.AgentEnv``): an actor's ``EpisodeRunner`` starts its own gateway over the
actor's copy of the policy on the first agent episode of a collect, and ``_Worker.end`` closes it
(and the policy copy's HTTP threads) when the collect ends; ``RayRollout.worker_threads`` shows
what is left on the workers. The agent travels with the env's registry entry.

Ray calls followed: ``ray.init(address=...)``, async actors, ``NodeAffinitySchedulingStrategy``
(https://docs.ray.io/en/latest/ray-core/api/doc/ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy.html),
``ray.wait``, ``runtime_env={"env_vars": ...}`` and the fault-tolerance exceptions of
``ray.exceptions`` (https://docs.ray.io/en/latest/ray-core/fault-tolerance.html).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import math
import os
import re
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

from envkit.policies.base import Policy
from envkit.types import Trajectory, TrajectoryGroup

__all__ = [
    "RAY_METRIC_NODE",
    "RAY_METRIC_PID",
    "RayRollout",
    "acollect_ray",
    "astream_ray",
    "import_ray",
]

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


def _check_policy(policy: Policy, ray: Any) -> None:
    """Refuses a policy that cannot travel to the workers: one that holds a model in memory or
    does not pickle (checked before any worker starts)."""
    hf = sys.modules.get("envkit.policies.hf")  # not imported: no HFPolicy can exist
    holds_model = hf is not None and isinstance(policy, hf.HFPolicy)
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
            return
    raise TypeError(
        f"backend='ray' sends the policy to every node by pickling, and {type(policy).__name__} "
        f"cannot travel: {why}. Serve the model with an OpenAI-compatible inference server and "
        "use envkit.policies.ServerPolicy, or use LiteLLMPolicy"
    )


def _env_for_workers(env: Any) -> tuple[Any, Any]:
    """What the actors build their envs from: an id or a factory, never a live instance; and
    the id's registry entry (``EnvSpec``) to register on a worker that lacks it (or ``None``)."""
    if isinstance(env, gym.Env):
        spec = env.spec or getattr(env.unwrapped, "spec", None)
        if spec is None:
            raise TypeError(
                "backend='ray' needs an env id or a factory (the actors make their own "
                f"instances); got an unregistered {type(env.unwrapped).__name__} instance"
            )
        env = spec.id
    if isinstance(env, str):
        from envkit.registration import spec

        return env, spec(env)  # an unknown id fails here, on the driver
    return env, None


def _install_spec(spec: Any) -> None:
    """Registers the driver's ``spec`` in this (worker) process when it lacks that id, or when
    the entry point is an object rather than an import path (a run-time registration, which
    may have changed since: ``override=True``)."""
    if spec is None:
        return
    if spec.id not in gym.registry or not isinstance(spec.entry_point, str):
        gym.registry[spec.id] = spec


def _connect(ray: Any, address: str | None, env_vars: dict[str, str]) -> bool:
    """Connects this process to Ray; True when that started a new local Ray instance."""
    if ray.is_initialized():
        return False  # the caller's connection (and its runtime_env) stays as it is
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
    node = getattr(ray._private.worker, "_global_node", None)
    return node is not None and bool(getattr(node, "head", False))


def _ray_children(ray: Any) -> list[tuple[int, str]]:
    """``(pid, start time)`` of every process the local raylet started, recursively (the
    agents and workers of the Ray instance this process started)."""
    from ray._private import ray_constants

    node = getattr(ray._private.worker, "_global_node", None)
    raylets = (node.all_processes.get(ray_constants.PROCESS_TYPE_RAYLET) or []) if node else []
    roots = {info.process.pid for info in raylets if getattr(info, "process", None)}
    parents: dict[int, int] = {}
    started: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            parents[int(entry)], started[int(entry)] = int(fields[1]), fields[19]
    found: set[int] = set()
    frontier = roots
    while frontier:
        kids = {p for p, pp in parents.items() if pp in frontier and p not in found}
        found |= kids
        frontier = kids
    return [(p, started[p]) for p in sorted(found)]


def _end_processes(procs: list[tuple[int, str]], wait_s: float = 5.0) -> None:
    """Waits up to ``wait_s`` for ``procs`` to exit, then SIGKILLs those left (the same pid
    and start time only: a reused pid is not touched)."""
    import signal

    def alive() -> list[int]:
        out = []
        for pid, start in procs:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z" and fields[19] == start:
                out.append(pid)
        return out

    deadline = time.monotonic() + wait_s
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in alive():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class _Worker:
    """A Ray actor (async): plays groups with the local engine. Its envs (one ``EnvPool`` per
    env, kwargs and size) live until ``close``; each collect brings its own policy copy."""

    def __init__(self, index: int) -> None:
        import ray

        self.index = index
        self._pools: dict[str, tuple[Any, asyncio.Semaphore]] = {}
        self._runs: dict[int, tuple[Any, asyncio.Semaphore]] = {}
        self.node_id: str = ray.get_runtime_context().get_node_id()
        self.pid = os.getpid()

    async def info(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "pid": self.pid, "host": socket.gethostname()}

    async def threads(self) -> dict[str, Any]:
        """This process's pid, its live thread names and the collects it has open."""
        names = sorted(t.name for t in threading.enumerate())
        return {"pid": self.pid, "threads": names, "open_runs": len(self._runs)}

    async def begin(
        self,
        run: int,
        pool_key: str,
        spec: Any,
        env: Any,
        env_kwargs: dict[str, Any] | None,
        policy: Policy,
        options: dict[str, Any] | None,
        episode_timeout: float | None,
        concurrency: int,
    ) -> None:
        """Readies collect ``run``: the env pool (made once per key), this collect's policy."""
        from envkit.env_pool import EnvPool
        from envkit.episode_runner import EpisodeRunner

        _install_spec(spec)
        if pool_key not in self._pools:
            # At most ``concurrency`` episodes hold an env: one never waits on the pool's queue
            # (a broken env's slot frees no queue entry), as in the local engine's workers.
            pool = EnvPool(env, concurrency, env_kwargs)
            self._pools[pool_key] = (pool, asyncio.Semaphore(concurrency))
        pool, slots = self._pools[pool_key]
        stream = getattr(policy, "set_seed_stream", None)
        if callable(stream):  # copies sampling at once must not send the same seeds
            stream(self.index, run)
        self._runs[run] = (EpisodeRunner(pool, policy, options, episode_timeout), slots)

    async def play(self, run: int, seed: int | None, indices: list[int]) -> list[Trajectory]:
        runner, slots = self._runs[run]

        async def one(k: int) -> Trajectory:
            async with slots:
                return await runner.episode(seed, k)

        trajs = await asyncio.gather(*(one(k) for k in indices))
        for t in trajs:
            t.metrics[RAY_METRIC_NODE] = self.node_id
            t.metrics[RAY_METRIC_PID] = self.pid
        return list(trajs)

    async def end(self, run: int) -> None:
        """Drops collect ``run``'s policy copy (its HTTP threads stop); the envs stay."""
        entry = self._runs.pop(run, None)
        if entry is not None:  # the gateway an agent env's episodes started
            with contextlib.suppress(Exception):
                await entry[0].aclose()
        close = getattr(entry[0].policy, "close", None) if entry else None
        if callable(close):
            with contextlib.suppress(Exception):
                close()

    async def close(self) -> None:
        """Closes the envs, then this process's sandbox pools (their containers go)."""
        from envkit._async import to_thread
        from envkit.sandbox.pool import close_shared_pools

        for run in list(self._runs):
            await self.end(run)
        for pool, _ in self._pools.values():
            await pool.aclose()
        self._pools.clear()
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


def _setup_error(e: BaseException) -> RuntimeError:
    """The error of a worker that could not ready a collect (``_Worker.begin``): the env's
    registry entry, the env factory or the policy did not unpickle there, or the env pool
    could not be made. Names the cause (the last error line of the worker's traceback), and
    what to do about a module the worker cannot import."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    found = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception)\b", ln)]
    cause = found[-1] if found else (lines[-1] if lines else repr(e))
    text = f"a Ray worker could not set up this collect: {cause}"
    if re.search(r"No module named|Can't get attribute|ImportError", cause):
        text += (
            ". The env (its registry entry: for an agent env its agent, tasks and reward), the "
            "env factory and the policy travel to the workers by pickling, and a function or "
            "class of an importable module travels by name: the worker imports that module. "
            "Install it on every node (or ship it with a Ray runtime_env), or have it sent by "
            "value: ray.cloudpickle.register_pickle_by_value(module) before the collect"
        )
    return RuntimeError(text)


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


class RayRollout:
    """The Ray backend as an object: actors (and their envs and sandbox pools) that live until
    ``close()``, reused by every ``collect``.

    Args:
        ray_address: The cluster's address (``"host:6379"``, ``"ray://host:10001"``, ``"auto"``);
            ``None``: ``$RAY_ADDRESS``, the latest local cluster, else a new local one (shut
            down again by ``close``). Ignored when Ray is already initialized in this process.
        workers_per_node: Actors per alive node (each one process with its own envs and pool).
        max_retries: Times a group lost with its actor is replayed on a live actor (default 0:
            its episodes become ``infra_error`` trajectories).
        env_vars: More environment variables for the workers (see ``forwarded_env_vars``).

    Example (a training loop's rollouts)::

        with RayRollout(ray_address="head:6379") as ray_backend:
            for step in range(steps):
                groups = ray_backend.collect("Arithmetic-v0", policy, seeds=..., group_size=8)
    """

    def __init__(
        self,
        *,
        ray_address: str | None = None,
        workers_per_node: int = 1,
        max_retries: int = 0,
        env_vars: dict[str, str] | None = None,
    ) -> None:
        if not isinstance(workers_per_node, int) or workers_per_node < 1:
            raise ValueError(f"workers_per_node must be an int >= 1, got {workers_per_node!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        self.ray_address = ray_address
        self.workers_per_node = workers_per_node
        self.max_retries = max_retries
        self.env_vars = env_vars
        self._ray: Any = None
        self._forwarded: dict[str, str] = {}
        self._actors: list[Any] = []
        self._infos: list[dict[str, Any] | None] = []
        self._dead: set[int] = set()
        self._closed_ok: set[int] = set()
        self._pool_keys: dict[tuple[Any, ...], str] = {}
        self._runs = 0
        self._started_ray = False
        self._closed = False
        self._start_lock = threading.Lock()

    @property
    def actor_infos(self) -> list[dict[str, Any]]:
        """``{"node_id", "pid", "host"}`` of each live actor (after the first collect)."""
        return [info for i, info in enumerate(self._infos) if info and i not in self._dead]

    def worker_threads(self, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """``{"pid", "threads", "open_runs"}`` of each live actor: its thread names (what a
        collect left running there: ``envkit-gateway``, ``envkit-server-policy_N``...) and the
        collects it still holds (0 between collects)."""
        if not self._actors:
            return []
        live = [a for i, a in enumerate(self._actors) if i not in self._dead]
        return list(self._ray.get([a.threads.remote() for a in live], timeout=timeout_s))

    def start(self) -> RayRollout:
        """Connects to Ray and starts the actors (the first collect does it when not called)."""
        with self._start_lock:  # concurrent collects (an env mixture) start it once
            return self._start()

    def _start(self) -> RayRollout:
        if self._closed:
            raise RuntimeError("this RayRollout is closed; make a new one")
        if self._actors:
            return self
        ray = self._ray = import_ray()
        self._forwarded = forwarded_env_vars(self.env_vars)
        self._started_ray = _connect(ray, self.ray_address, self._forwarded)
        if self._started_ray:  # a program that never closes this still ends its Ray processes
            atexit.register(self.close)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
        actor_cls = ray.remote(_Worker)
        self._actors = [
            actor_cls.options(
                num_cpus=0,
                max_restarts=0,
                max_concurrency=1000,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
                runtime_env={"env_vars": self._forwarded},
            ).remote(i)
            for i, node in enumerate(n for n in nodes for _ in range(self.workers_per_node))
        ]
        lost = _lost_work_errors(ray)
        start_errors: list[str] = []
        for i, ref in enumerate([a.info.remote() for a in self._actors]):
            try:  # a node whose worker cannot start in time (runtime_env set-up...) is left out
                self._infos.append(ray.get(ref, timeout=_START_TIMEOUT_S))
            except (*lost, ray.exceptions.GetTimeoutError) as e:
                ray.kill(self._actors[i], no_restart=True)
                self._infos.append(None)
                self._dead.add(i)
                start_errors.append(f"{type(e).__name__}: {e}")
        if len(self._dead) == len(self._actors):
            n = len(self._actors)
            self.close()
            first = start_errors[0] if start_errors else "no alive node"
            raise RuntimeError(f"no Ray worker could start ({n} tried); the first error: {first}")
        return self

    async def astream(
        self,
        env: Any,
        policy: Policy,
        *,
        seeds: Sequence[int | None],
        group_size: int = 1,
        concurrency: int = 32,
        options: dict[str, Any] | None = None,
        env_kwargs: dict[str, Any] | None = None,
        episode_timeout: float | None = None,
    ) -> AsyncIterator[tuple[int, TrajectoryGroup]]:
        """Plays the episodes on the actors; yields ``(seed index, group)`` as groups finish.

        Args:
            env, policy, seeds, group_size, options, env_kwargs, episode_timeout: As for
                ``envkit.rollout.acollect``; ``env`` must be an id, a registered instance (its
                id is used) or a picklable factory, and ``policy`` must pickle (module docs).
            concurrency: Most episodes in flight over the whole cluster, split evenly among
                the actors (each has at least one).
        """
        from envkit.env_pool import EnvPool

        source, spec = _env_for_workers(env)
        env_id = EnvPool(source, 1, env_kwargs).env_id
        seeds = list(seeds)
        import ray

        _check_policy(policy, ray)  # refused before any worker starts
        await asyncio.to_thread(self.start)
        ray = self._ray
        policy_ref = ray.put(policy)  # pickled once, not once per actor
        spec_ref = ray.put(spec)  # pickled once (a dataset env's rows), not once per actor
        lost = _lost_work_errors(ray)
        live = [i for i in range(len(self._actors)) if i not in self._dead]
        if not live:
            raise RuntimeError("every Ray worker of this RayRollout has died; make a new one")
        per_actor = max(1, math.ceil(concurrency / len(live)))
        pool_key = self._pool_key(source, env_kwargs, per_actor)
        self._runs += 1
        run = self._runs
        begins = {
            i: self._actors[i].begin.remote(
                run, pool_key, spec_ref, source, env_kwargs, policy_ref, options, episode_timeout,
                per_actor,
            )
            for i in live
        }  # fmt: skip
        # Groups in flight per actor: enough to keep its ``per_actor`` episode slots busy.
        slots = math.ceil(per_actor / group_size) + 1
        todo = [(gi, 0) for gi in range(len(seeds))]  # (seed index, tries so far)
        todo.reverse()
        busy = {i: 0 for i in live}
        # Each in-flight call as an asyncio future of its ObjectRef (``ObjectRef.future()``):
        # the loop wakes when one finishes, no polling. Values: (ref, seed index, actor, tries).
        inflight: dict[asyncio.Future[Any], tuple[Any, int, int, int]] = {}
        indices = list(range(group_size))
        nobody = {"node_id": None, "pid": None}
        died_now: set[int] = set()

        def submit() -> None:
            while todo:
                free = [i for i in busy if i not in self._dead and busy[i] < slots]
                if not free:
                    return
                i = min(free, key=lambda a: busy[a])
                gi, tries = todo.pop()
                ref = self._actors[i].play.remote(run, seeds[gi], indices)
                inflight[asyncio.wrap_future(ref.future())] = (ref, gi, i, tries)
                busy[i] += 1

        try:
            failed: BaseException | None = None
            for i, ref in begins.items():
                try:
                    await asyncio.wrap_future(ref.future())
                except lost:
                    self._dead.add(i)
                except ray.exceptions.RayTaskError as e:  # every result read: none is logged
                    failed = failed or e
            if failed is not None:  # the same set-up on every worker: nothing here can run
                raise _setup_error(failed) from None
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
                        if i not in self._dead:
                            self._dead.add(i)
                            died_now.add(i)
                        if tries < self.max_retries:
                            todo.append((gi, tries + 1))
                            continue
                        text = f"{type(e).__name__} in the Ray worker: {str(e) or repr(e)}"
                        info = self._infos[i] or {}
                        trajs = _infra_group_trajs(env_id, seeds[gi], indices, text, info)
                    yield gi, _group(env_id, seeds[gi], trajs)
                submit()
        finally:
            for ref, *_ in list(inflight.values()):
                ray.cancel(ref, force=False)
            ends = [self._actors[i].end.remote(run) for i in live if i not in self._dead]
            if ends:
                await asyncio.to_thread(ray.wait, ends, num_returns=len(ends), timeout=30)
            if died_now:  # a lost actor cannot close its sandboxes: reap them on its node
                await asyncio.to_thread(self._reap, died_now)

    async def acollect(
        self,
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
    ) -> list[TrajectoryGroup]:
        """``astream`` gathered: one group per seed, in seed order (``acollect``'s contract)."""
        seeds = list(seeds)
        stream = self.astream(
            env,
            policy,
            seeds=seeds,
            group_size=group_size,
            concurrency=concurrency,
            options=options,
            env_kwargs=env_kwargs,
            episode_timeout=episode_timeout,
        )
        return await _gather(stream, len(seeds), group_size, f"{env} on Ray", jsonl_path, progress)

    def collect(self, env: Any, policy: Policy, **kwargs: Any) -> list[TrajectoryGroup]:
        """``acollect`` from synchronous code (same arguments)."""
        from envkit._async import run_sync

        return run_sync(self.acollect(env, policy, **kwargs))

    def _pool_key(self, source: Any, env_kwargs: dict[str, Any] | None, size: int) -> str:
        """One name per (env, kwargs, pool size): the actors keep one env pool per name."""
        try:
            hash(source)
            what: Any = source
        except TypeError:
            what = id(source)
        key = (what, repr(sorted((env_kwargs or {}).items())), size)
        return self._pool_keys.setdefault(key, f"pool-{len(self._pool_keys)}")

    def _reap(self, indices: set[int]) -> None:
        """Removes the sandboxes left by the actors ``indices`` (lost, killed, not closed)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from envkit.sandbox import reaper

        ray = self._ray
        pids_by_node: dict[str, list[int]] = {}
        for i in indices:
            info = self._infos[i]
            if info is not None:
                pids_by_node.setdefault(info["node_id"], []).append(info["pid"])
        reap = ray.remote(_reap_node)
        alive_now = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        cleanups = [
            reap.options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False),
                runtime_env={"env_vars": self._forwarded},
            ).remote(reaper.run_id(), pids, 10.0)
            for node, pids in pids_by_node.items()
            if node in alive_now
        ]
        if cleanups:
            ray.wait(cleanups, num_returns=len(cleanups), timeout=60)

    def close(self) -> None:
        """Closes the actors' envs and sandbox pools, ends the actors, and shuts down the local
        Ray instance this object started (with every process its raylet started)."""
        if self._closed:
            return
        self._closed = True
        ray = self._ray
        if ray is None or not ray.is_initialized():
            return
        try:
            live = [i for i in range(len(self._actors)) if i not in self._dead]
            closing = {self._actors[i].close.remote(): i for i in live}
            if closing:
                ready, _ = ray.wait(list(closing), num_returns=len(closing), timeout=60)
                for ref in ready:
                    with contextlib.suppress(Exception):
                        ray.get(ref)
                        self._closed_ok.add(closing[ref])
            for a in self._actors:
                with contextlib.suppress(Exception):
                    ray.kill(a, no_restart=True)
            # Only an actor that did not close its pools (killed, stuck) can leave containers.
            left = {i for i in live if i not in self._closed_ok}
            if left and not self._started_ray:
                self._reap(left)
        finally:
            if self._started_ray:
                children = _ray_children(ray)
                ray.shutdown()
                _end_processes(children)

    async def aclose(self) -> None:
        """``close`` without blocking the event loop."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> RayRollout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> RayRollout:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


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
    backend: RayRollout | None = None,
) -> AsyncIterator[tuple[int, TrajectoryGroup]]:
    """Plays the episodes on a Ray cluster; yields ``(seed index, group)`` as groups finish.

    Uses ``backend`` (a ``RayRollout`` the caller keeps open) or a temporary ``RayRollout``
    made from ``ray_address``, ``workers_per_node``, ``max_retries`` and ``env_vars`` (see
    there) and closed at the end. The other arguments are ``RayRollout.astream``'s.
    """
    own = backend is None
    if backend is None:
        backend = RayRollout(
            ray_address=ray_address,
            workers_per_node=workers_per_node,
            max_retries=max_retries,
            env_vars=env_vars,
        )
    try:
        async for item in backend.astream(
            env,
            policy,
            seeds=seeds,
            group_size=group_size,
            concurrency=concurrency,
            options=options,
            env_kwargs=env_kwargs,
            episode_timeout=episode_timeout,
        ):
            yield item
    finally:
        if own:
            await backend.aclose()


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
    seeds = list(seeds)
    stream = astream_ray(
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
    )
    return await _gather(stream, len(seeds), group_size, f"{env} on Ray", jsonl_path, progress)


async def _gather(
    stream: AsyncIterator[tuple[int, TrajectoryGroup]],
    n_seeds: int,
    group_size: int,
    description: str,
    jsonl_path: str | Path | None,
    progress: bool,
) -> list[TrajectoryGroup]:
    """Gathers ``(seed index, group)`` pairs into one group per seed, in seed order.

    Args:
        stream: The groups as they finish (``astream``, ``astream_ray``); not started yet.
        n_seeds: How many seeds the stream plays (each yields one group).
        group_size: Episodes per group (the progress bar's total is ``n_seeds * group_size``).
        description: The text left of the progress bar.
        jsonl_path: If given, truncated first, then each group is appended as it arrives.
        progress: Show the progress bar.

    Returns:
        One ``TrajectoryGroup`` per seed, in seed order.
    """
    from envkit.progress import RolloutProgress

    out: list[TrajectoryGroup | None] = [None] * n_seeds
    bar = RolloutProgress(progress, n_seeds * group_size, description)
    out_path = Path(jsonl_path) if jsonl_path is not None else None
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text("")
    try:
        async for gi, group in stream:
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
