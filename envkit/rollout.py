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
import contextlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym

from envkit._async import run_sync, to_thread
from envkit.env import ChatEnv
from envkit.errors import InfraError
from envkit.policies.base import Policy
from envkit.types import (
    Completion,
    GenerationRequest,
    Message,
    Trajectory,
    TrajectoryGroup,
    Usage,
)

__all__ = ["EnvPool", "acollect", "collect"]

EnvSource = str | ChatEnv | gym.Env | Callable[[], gym.Env]


_SCALARS = (str, int, float, bool, type(None))


def _jsonable(value: Any) -> Any:
    """Converts info values to plain JSON (numpy scalars, tuples...); unknown objects to str."""
    if type(value) is dict and all(
        type(k) is str and type(v) in _SCALARS for k, v in value.items()
    ):
        return dict(value)  # the common case: a flat dict of JSON scalars, no round trip
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist") and callable(o.tolist):  # numpy arrays and scalars, torch tensors
        return o.tolist()
    if hasattr(o, "item") and callable(o.item):
        return o.item()
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=str)
    return repr(o)


def _unwrap(env: gym.Env) -> ChatEnv:
    inner = env.unwrapped
    if not isinstance(inner, ChatEnv):
        raise TypeError(
            f"collect() needs envkit ChatEnv environments, got {type(inner).__name__}; "
            "subclass envkit.ChatEnv"
        )
    return inner


class EnvPool:
    """Env instances for concurrent episodes: made on demand up to ``size``, reused after reset.

    An instance whose episode failed or timed out is closed (in the background) and replaced,
    since its state (a half-finished tool call, a dead sandbox) cannot be trusted.
    """

    def __init__(self, source: EnvSource, size: int, env_kwargs: dict[str, Any] | None = None):
        if size < 1:
            raise ValueError(f"concurrency must be >= 1, got {size}")
        self._user_env: ChatEnv | None = None
        self._factory: Callable[[], ChatEnv] | None
        kwargs = dict(env_kwargs or {})
        if isinstance(source, str):
            from envkit.registration import make_chat_env, spec

            self.env_id = _full(source)
            spec(self.env_id)  # an unknown id fails now, with gymnasium's suggestions
            self._factory = lambda: make_chat_env(source, **kwargs)
        elif isinstance(source, gym.Env):
            if kwargs:
                raise TypeError("env_kwargs cannot be applied to an env instance; pass its id")
            self._user_env = _unwrap(source)
            spec = source.spec or self._user_env.spec
            self.env_id = spec.id if spec else type(self._user_env).__name__
            self._factory = (lambda: _unwrap(gym.make(spec))) if spec is not None else None
        elif callable(source):
            self._factory = lambda: _unwrap(source(**kwargs))
            self.env_id = getattr(source, "__name__", type(source).__name__)
        else:
            raise TypeError(
                "env must be an env id such as 'envkit/Arithmetic-v0', a ChatEnv instance, or a "
                f"callable that returns one; got {type(source).__name__}"
            )
        self.size = size if self._factory is not None else 1
        self._idle: asyncio.Queue[ChatEnv] = asyncio.Queue()
        self._made = 0
        self._owned: list[ChatEnv] = []
        self._background: set[asyncio.Task[Any]] = set()
        if self._user_env is not None:
            self._idle.put_nowait(self._user_env)
            self._made = 1

    async def acquire(self) -> ChatEnv:
        if self._idle.empty() and self._made < self.size:
            self._made += 1
            try:
                assert self._factory is not None
                env = await to_thread(self._factory)
            except BaseException:
                self._made -= 1
                raise
            self._owned.append(env)
            return env
        return await self._idle.get()

    def release(self, env: ChatEnv, *, broken: bool = False) -> None:
        if not broken or (env is self._user_env and self._factory is None):
            self._idle.put_nowait(env)
            return
        self._made -= 1
        if env is not self._user_env:
            self._owned.remove(env)
            task = asyncio.ensure_future(to_thread(_close_quietly, env))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        """Closes the envs this pool made (not one the caller passed in)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        envs, self._owned = self._owned, []
        await asyncio.gather(*(to_thread(_close_quietly, e) for e in envs))


def _full(env_id: str) -> str:
    from envkit.registration import full_id

    return full_id(env_id)


def _close_quietly(env: ChatEnv) -> None:
    # Closing a broken env must not hide the episode's own error.
    with contextlib.suppress(Exception):
        env.close()


class _Runner:
    def __init__(
        self,
        pool: EnvPool,
        policy: Policy,
        options: dict[str, Any] | None,
        episode_timeout: float | None,
    ) -> None:
        self.pool = pool
        self.policy = policy
        self.options = options
        self.episode_timeout = episode_timeout

    async def episode(self, seed: int | None, group_index: int) -> Trajectory:
        traj = Trajectory(env_id=self.pool.env_id, seed=seed, group_index=group_index)
        start = time.perf_counter()
        try:
            env = await self.pool.acquire()
        except Exception as e:
            traj.outcome, traj.error = _classify(e, "making the env")
            traj.timings.total_s = time.perf_counter() - start
            return traj
        broken = True
        try:
            await asyncio.wait_for(self._play(env, traj), self.episode_timeout)
            broken = traj.failed
        except asyncio.TimeoutError:
            traj.outcome = "timeout"
            traj.error = (
                f"the episode did not finish within episode_timeout={self.episode_timeout} s"
            )
        except Exception as e:  # e.g. a step result of the wrong shape: this episode failed
            traj.outcome, traj.error = _classify(e, "handling the env's output")
        finally:
            self.pool.release(env, broken=broken)
            traj.timings.total_s = time.perf_counter() - start
        if not traj.failed:
            traj.reward = math.fsum(traj.step_rewards)
        return traj

    async def _play(self, env: ChatEnv, traj: Trajectory) -> None:
        t = time.perf_counter()
        try:
            obs, info = await env.areset(seed=traj.seed, options=self.options)
        except Exception as e:
            traj.outcome, traj.error = _classify(e, "env.reset")
            return
        finally:
            traj.timings.env_s += time.perf_counter() - t
        traj.task_id = env.task.id if env.task is not None else None
        traj.reference = _jsonable(env.task.reference) if env.task is not None else None
        tools = env.tool_schemas or None
        traj.tools = tools
        traj.messages = [Message.coerce(m) for m in obs]
        last_obs = obs
        counters: Counter[str] = Counter()
        while True:
            # model_construct: the messages are validated Message objects already.
            request = GenerationRequest.model_construct(messages=list(traj.messages), tools=tools)
            t = time.perf_counter()
            try:
                completions = await self.policy.agenerate([request])
                completion = _single(completions)
            except Exception as e:
                traj.outcome, traj.error = "policy_error", _describe(e, "policy.agenerate")
                return
            finally:
                traj.timings.policy_s += time.perf_counter() - t
            traj.completions.append(completion)
            if completion.usage is not None:
                traj.usage = (traj.usage or Usage()) + completion.usage
            t = time.perf_counter()
            try:
                obs, reward, terminated, truncated, info = await env.astep(completion.message)
            except Exception as e:
                traj.messages.append(completion.message)
                traj.outcome, traj.error = _classify(e, "env.step")
                return
            finally:
                traj.timings.env_s += time.perf_counter() - t
            traj.messages = _update_messages(traj.messages, last_obs, obs)
            last_obs = obs
            traj.step_rewards.append(float(reward))
            traj.info = _jsonable(info)
            for key, value in info.items():
                if key.startswith("tool_") and isinstance(value, int):
                    counters[key] += value
            if terminated or truncated:
                traj.outcome = "ok" if terminated else "truncated"
                traj.metrics.update({"turns": traj.num_turns, **counters})
                return


def _update_messages(
    messages: list[Message], last_obs: Sequence[Any], obs: Sequence[Any]
) -> list[Message]:
    """``obs`` as ``Message`` objects, reusing those of the unchanged prefix of ``last_obs``.

    Comparing dicts is much cheaper than validating them again, and an env that rewrites
    earlier messages still gets them re-read.
    """
    n, limit = 0, min(len(last_obs), len(obs), len(messages))
    while n < limit and obs[n] == last_obs[n]:
        n += 1
    return messages[:n] + [Message.coerce(m) for m in obs[n:]]


def _single(completions: Sequence[Completion]) -> Completion:
    if len(completions) != 1 or not isinstance(completions[0], Completion):
        raise TypeError(
            f"the policy returned {len(completions)} items for 1 request; agenerate must return "
            "exactly one envkit.Completion per request"
        )
    return completions[0]


def _describe(e: BaseException, where: str) -> str:
    text = str(e) or repr(e)
    return f"{type(e).__name__} in {where}: {text}"


def _classify(e: BaseException, where: str) -> tuple[Any, str]:
    if isinstance(e, InfraError):
        return "infra_error", _describe(e, where)
    return "env_error", _describe(e, where)


class _Progress:
    """A rich progress bar with the running mean reward and outcome counts (or nothing)."""

    def __init__(self, enabled: bool, total: int, description: str) -> None:
        self.enabled = enabled
        self.outcomes: Counter[str] = Counter()
        self.rewards: list[float] = []
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[stats]}"),
            transient=False,
        )
        self.task = self.bar.add_task(description, total=total, stats="")
        self.bar.start()

    def update(self, traj: Trajectory) -> None:
        self.outcomes[traj.outcome] += 1
        if traj.reward is not None:
            self.rewards.append(traj.reward)
        if not self.enabled:
            return
        mean = sum(self.rewards) / len(self.rewards) if self.rewards else float("nan")
        stats = f"reward {mean:.3f} " + " ".join(
            f"{k}={v}" for k, v in sorted(self.outcomes.items())
        )
        self.bar.update(self.task, advance=1, stats=stats)

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()


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
    runner = _Runner(pool, policy, options, episode_timeout)
    groups = [TrajectoryGroup(env_id=pool.env_id, seed=s, trajectories=[]) for s in seeds]
    remaining = [group_size] * len(seeds)
    bar = _Progress(progress, len(seeds) * group_size, f"{pool.env_id}")
    out_path = Path(jsonl_path) if jsonl_path is not None else None
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
        )
    )
