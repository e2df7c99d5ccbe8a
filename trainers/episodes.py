"""``EpisodeSource``: plays a step's episodes with envkit's async engine and hands them to TRL.

For each optimizer step TRL gives the dataset rows of the local generation batch (each task seed
repeated ``group_size`` times). The source

1. plays all episodes of the step at once with ``envkit.rollout.acollect`` (env steps, tool calls
   and sandbox execs of the whole batch overlap; the policy batches the pending turns),
2. scores them (the env's own reward, or the user's reward / rubric / judge through
   ``envkit.rewards``),
3. renders each trajectory into one sequence with its loss mask (``trainers.sequences``),
4. records the step's diagnostics and writes its trajectories to the run folder,

and returns TRL's rollout dict. An episode that failed, or whose reward is unknown (judge error),
keeps its row with reward ``None``: TRL gives it advantage 0 and the backend drops it.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from envkit.trainers.config import GRPOConfig
from envkit.trainers.diagnostics import step_diagnostics
from envkit.trainers.run_dir import RunDir
from envkit.trainers.sequences import RenderedSequence, SequenceError, render_trajectory
from envkit.types import TrajectoryGroup

__all__ = ["BackgroundLoop", "EpisodeSource", "derive_seed", "score_groups"]

T = TypeVar("T")


class BackgroundLoop:
    """An asyncio loop on a daemon thread, so sync code (TRL's loop, notebooks) can await.

    The policy's batching primitives live on this one loop for the whole run.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="envkit-rollouts", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any parts (stable across processes and Python runs)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


async def score_groups(groups: list[TrajectoryGroup], reward: Any) -> None:
    """Fills each trajectory's reward with ``reward`` (None: keep the env's own reward)."""
    if reward is None:
        return
    from envkit import rewards as rewards_mod

    scorer = getattr(rewards_mod, "ascore_groups", None)
    if scorer is not None:
        await scorer(groups, reward)
        return
    sync_scorer = getattr(rewards_mod, "score_groups", None)
    if sync_scorer is None:
        raise RuntimeError("envkit.rewards has no score_groups; cannot apply a custom reward")
    result = sync_scorer(groups, reward)
    if asyncio.iscoroutine(result):
        await result


class EpisodeSource:
    """Callable given to ``TRLBackend(episodes=...)``; see the module doc.

    Args:
        env: An env id, a factory returning a ``ChatEnv``, or an ``EnvMixture`` (dataset rows
            then carry ``envkit_env``, the env index of their group).
        config: The run's config.
        make_policy: Builds the sampling policy from the (unwrapped, adapter-carrying) model.
        reward: ``None`` (the env's reward) or anything ``envkit.rewards.score_groups`` takes.
        stop_token_ids: The model's end-of-turn token ids.
        run_dir: Where trajectories are written (``None``: nowhere).
        loop: The background loop episodes run on.
    """

    def __init__(
        self,
        env: Any,
        config: GRPOConfig,
        *,
        make_policy: Callable[[Any], Any],
        reward: Any,
        stop_token_ids: Sequence[int],
        run_dir: RunDir | None,
        loop: BackgroundLoop,
    ) -> None:
        self.env = env
        self.config = config
        self.make_policy = make_policy
        self.reward = reward
        self.stop_token_ids = list(stop_token_ids)
        self.run_dir = run_dir
        self.loop = loop
        self._policy: Any = None
        self._model: Any = None
        self.last_groups: list[TrajectoryGroup] = []
        self.last_metrics: dict[str, float] = {}

    def policy_for(self, model: Any) -> Any:
        """The sampling policy bound to ``model`` (made once per model object)."""
        if self._policy is None or self._model is not model:
            self._policy, self._model = self.make_policy(model), model
        return self._policy

    def _group_tasks(self, inputs: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
        """``(seed, env index)`` of each group (env index 0 without a mixture)."""
        g = self.config.group_size
        tasks = [(int(row["envkit_seed"]), int(row.get("envkit_env", 0))) for row in inputs]
        if len(tasks) % g:
            raise RuntimeError(
                f"a generation batch of {len(tasks)} rows is not whole groups of {g}"
            )
        group_tasks = tasks[::g]
        for i, t in enumerate(group_tasks):
            if tasks[i * g : (i + 1) * g] != [t] * g:  # one seed AND one env per group
                raise RuntimeError(
                    "TRL split a group across the batch; groups_per_step must be a "
                    "multiple of the number of processes"
                )
        return group_tasks

    def _group_seeds(self, inputs: Sequence[dict[str, Any]]) -> list[int]:
        return [seed for seed, _ in self._group_tasks(inputs)]

    def play(
        self, seeds: Sequence[int], model: Any, envs: Sequence[int] | None = None
    ) -> list[TrajectoryGroup]:
        """Plays ``group_size`` episodes per seed with the policy of ``model``.

        With a mixture, ``envs[i]`` is the env index of seed ``i``; each env plays its own
        groups (all at once when ``concurrency`` allows every episode of the step, otherwise one
        env after another) and the groups come back in the order of ``seeds``.
        """
        from envkit.rollout import acollect
        from envkit.trainers.mixture import EnvMixture

        cfg = self.config
        policy = self.policy_for(model)
        if not isinstance(self.env, EnvMixture):
            episodes = len(seeds) * cfg.group_size
            return self.loop.run(
                acollect(
                    self.env,
                    policy,
                    seeds=list(seeds),
                    group_size=cfg.group_size,
                    concurrency=min(cfg.concurrency, episodes),
                    env_kwargs=cfg.env_kwargs or None,
                    episode_timeout=cfg.episode_timeout,
                    progress=False,
                )
            )
        mixture = self.env
        envs = list(envs) if envs is not None else [0] * len(seeds)
        order = list(dict.fromkeys(envs))
        positions = {k: [i for i, e in enumerate(envs) if e == k] for k in order}

        def one(k: int) -> Coroutine[Any, Any, list[TrajectoryGroup]]:
            idx = positions[k]
            return acollect(
                mixture.entries[k].env,
                policy,
                seeds=[seeds[i] for i in idx],
                group_size=cfg.group_size,
                concurrency=min(cfg.concurrency, len(idx) * cfg.group_size),
                env_kwargs=mixture.env_kwargs(k, cfg.env_kwargs) or None,
                episode_timeout=cfg.episode_timeout,
                progress=False,
            )

        async def all_envs() -> list[list[TrajectoryGroup]]:
            if cfg.concurrency >= len(seeds) * cfg.group_size:
                return list(await asyncio.gather(*(one(k) for k in order)))
            return [await one(k) for k in order]

        out: list[TrajectoryGroup | None] = [None] * len(seeds)
        for k, played in zip(order, self.loop.run(all_envs()), strict=True):
            for i, group in zip(positions[k], played, strict=True):
                out[i] = group
        return out  # type: ignore[return-value]

    def __call__(self, inputs: list[dict[str, Any]], trainer: Any) -> dict[str, Any]:
        import torch

        from envkit.trainers._compat import unwrap_for_generation

        cfg = self.config
        tasks = self._group_tasks(inputs)
        seeds = [seed for seed, _ in tasks]
        step = trainer.state.global_step + 1
        rank = trainer.accelerator.process_index
        # Sampling depends only on (seed, step, rank): a resumed run replays the same episodes.
        torch.manual_seed(derive_seed(cfg.seed, "rollout", step, rank))
        t0 = time.perf_counter()
        with unwrap_for_generation(trainer) as model:
            was_training = model.training
            model.eval()
            try:
                groups = self.play(seeds, model, [env for _, env in tasks])
            finally:
                model.train(was_training)
        t1 = time.perf_counter()
        self.loop.run(score_groups(groups, self.reward))
        t2 = time.perf_counter()
        rows = self._rows(groups)
        metrics = step_diagnostics(groups, collapse_similarity=cfg.collapse_similarity)
        metrics.update(rows.pop("_metrics"))
        from envkit.trainers.mixture import EnvMixture, per_env_metrics

        if isinstance(self.env, EnvMixture):
            names = [self.env.names[env] for _, env in tasks]
            metrics.update(per_env_metrics(groups, names))
        metrics["time/rollout_s"] = t1 - t0
        metrics["time/reward_s"] = t2 - t1
        if trainer.accelerator.num_processes > 1:
            metrics = _merge_across_processes(metrics)
        for key, value in metrics.items():
            trainer.record(key, value)
        self.last_groups, self.last_metrics = groups, metrics
        if self.run_dir is not None and cfg.save_trajectories:
            self.run_dir.write_trajectories(step, groups, rank)
        return rows

    def _rows(self, groups: list[TrajectoryGroup]) -> dict[str, Any]:
        prompt_ids, completion_ids, masks, logprobs, rewards = [], [], [], [], []
        have_logprobs = True
        render_errors = rerendered = 0
        for group in groups:
            for traj in group:
                try:
                    seq = render_trajectory(traj, stop_token_ids=self.stop_token_ids)
                except SequenceError as e:
                    if traj.completions:  # an episode without turns already failed visibly
                        render_errors += 1
                        traj.metrics["sequence_error"] = str(e)
                        traj.reward = None
                    seq = _placeholder(traj, self.stop_token_ids)
                rerendered += seq.rerendered_turns
                reward = traj.reward if group.outcome == "ok" and not traj.failed else None
                prompt_ids.append(seq.prompt_ids)
                completion_ids.append(seq.completion_ids)
                masks.append(seq.mask)
                if seq.logprobs is None:
                    have_logprobs = False
                logprobs.append(seq.logprobs or [0.0] * len(seq.completion_ids))
                rewards.append(reward)
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": completion_ids,
            "logprobs": logprobs if have_logprobs else None,
            "env_mask": masks,
            "envkit_reward": rewards,
            "_metrics": {
                "sequences/render_errors": float(render_errors),
                "sequences/rerendered_turns": float(rerendered),
            },
        }


_SUMMED = ("groups/judge_error", "episodes/failed", "sequences/")


def _merge_across_processes(metrics: dict[str, float]) -> dict[str, float]:
    """Combines every process's step metrics: counts add up, the rest is averaged.

    Each process plays the same number of episodes, so the mean of the processes' means is the
    mean over all episodes.
    """
    import math

    from accelerate.utils import gather_object

    merged: dict[str, list[float]] = {}
    for part in gather_object([metrics]):
        for key, value in part.items():
            merged.setdefault(key, []).append(value)
    out = {}
    for key, values in merged.items():
        finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
        if key.startswith(_SUMMED) or (
            key.startswith("env/") and key.endswith(("/episodes", "/groups"))
        ):
            out[key] = float(sum(finite))
        elif key.endswith("_max"):
            out[key] = max(finite) if finite else math.nan
        else:
            out[key] = sum(finite) / len(finite) if finite else math.nan
    return out


def _placeholder(traj: Any, stop_token_ids: Sequence[int]) -> RenderedSequence:
    """A one-token, fully masked row for an episode that cannot be trained on."""
    prompt = list(traj.completions[0].prompt_token_ids or []) if traj.completions else []
    stop = stop_token_ids[0] if stop_token_ids else 0
    return RenderedSequence(
        prompt_ids=prompt or [stop], completion_ids=[stop], mask=[0], logprobs=[0.0]
    )
