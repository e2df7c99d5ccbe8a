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

Overlapped rollouts (``max_staleness = k > 0``, as PipelineRL, Piché et al. 2025, and TRL's async
GRPO): when step t's episodes are handed to TRL, the source already starts playing and scoring
steps t+1..t+k on the background loop, so the env/tool waits of the next steps overlap step t's
optimizer work. Generation never runs on the model being trained: it uses a frozen copy of the
peft model (deep-copied once) into which the LoRA weights of the newest optimizer step are loaded
before each step's episodes start (the trainer thread snapshots them when TRL asks for a step;
plays are serialized, so weights never change under a generation in flight). Episodes of step s
are thus sampled with adapter version v >= s-1-k (v = optimizer steps applied); each trajectory
records it in ``metrics["behaviour_version"]`` and the step logs ``staleness/mean|max``. TRL's
sampler is deterministic (``shuffle_dataset=False``), so the next steps' tasks are predicted from
the dataset order; the rows TRL actually passes are checked against the prediction and a mismatch
discards the prefetch and plays synchronously (``staleness/prefetch_miss``). An error in the
producer is raised in the trainer thread, with its traceback, when the step is asked for.

Agent envs (``envkit.AgentEnv``): the agents call the step's policy through the run's one
gateway (``envkit.trainers.agents.RunGateway``, rebound to whichever policy object the step
samples with: the trained model's, the frozen copy's, or the ``ServerPolicy``); each further
branch of an episode (``Trajectory.branches``) becomes an extra row that the backend appends
with the episode's advantage (``take_branch_rows``); groups waiting for the RULER judge
(``reward_pending == "ruler"``) are scored by the run's judge; ``gateway/*`` and ``agent/*``
counts join the step's metrics. With ``rollout_backend="ray"`` (always through a policy server)
the run's gateway is not used: each Ray worker plays its agents through a gateway of its own over
its copy of the step's ``ServerPolicy`` (``envkit.ray_rollout``), and the step trains on the ids
those gateways recorded, which come back in the trajectories.

Training through an inference server (``policy_server``, with or without overlap): episodes are
sampled by ``envkit.policies.ServerPolicy``; when TRL asks for a step whose weights the server
does not have yet, the trainer thread saves the adapter to ``server_adapters/vNNNNNN`` in the run
folder and the producer, before that step's episodes start, has the server load it under a new
name (vLLM's ``/v1/load_lora_adapter``), sends the next requests to it and unloads the previous
one (``/v1/unload_lora_adapter``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from envkit.metrics import Reduction, merge_metrics
from envkit.trainers.config import GRPOConfig
from envkit.trainers.diagnostics import STEP_DIAGNOSTICS, step_diagnostics
from envkit.trainers.run_dir import RunDir
from envkit.trainers.sequences import RenderedSequence, SequenceError, render_trajectory
from envkit.types import TrajectoryGroup

__all__ = ["BackgroundLoop", "EpisodeSource", "derive_seed", "score_groups"]

T = TypeVar("T")

_ADAPTER_WAIT_S = 600.0
"""Seconds a non-main process waits for the main one to load an adapter on the server."""


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


@dataclass
class _Prefetch:
    """Episodes of a future step being played by the producer."""

    tasks: list[tuple[int, int]]
    future: concurrent.futures.Future[tuple[list[TrajectoryGroup], int, float, float]]


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
        self.dataset_tasks: list[tuple[int, int]] | None = None
        """``(seed, env index)`` of every dataset row in order (predicts the next steps' tasks)."""
        self._prefetch: dict[int, _Prefetch] = {}
        self._rollout_model: Any = None  # the frozen copy generation runs on (overlap mode)
        self._rollout_version = -1  # optimizer steps applied to the copy's adapter
        self._snapshot: tuple[int, dict[str, Any]] | None = None  # newest (version, weights)
        self._play_lock: asyncio.Lock | None = None
        self.server_policy: Any = None
        """A ``ServerPolicy`` to sample with instead of the model (``policy_server``)."""
        self._server_adapter: str | None = None  # the adapter the server samples with now
        self._server_adapters: list[str] = []  # loaded on the server, oldest first
        self._adapter_tmp: Any = None  # the temporary adapter folder (no run folder)
        self._world = 1  # processes of the run (accelerate / DDP)
        self.ray_backend: Any = None
        """The run's ``envkit.ray_rollout.RayRollout`` (``rollout_backend="ray"``), closed by
        ``close``."""
        self.agent_gateway: Any = None
        """The run's ``envkit.trainers.agents.RunGateway`` when it trains agent envs (their
        agents call the step's policy through it), closed by ``close``."""
        self.judge: Any = None
        """The run's RULER judge for agent envs without a reward (``reward_pending="ruler"``)."""
        self.pending_scorers: dict[str, Any] = {}
        """Group scorers of agent envs by ``reward_pending`` name (``envkit.trainers.agents``)."""
        self._branch_rows: list[Any] = []

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
        return self.loop.run(self.aplay(seeds, model, envs))

    async def aplay(
        self,
        seeds: Sequence[int],
        model: Any,
        envs: Sequence[int] | None = None,
        *,
        policy: Any = None,
    ) -> list[TrajectoryGroup]:
        """``play`` as a coroutine of the background loop (``policy``: sample with it instead of
        ``model``'s policy)."""
        from envkit.trainers.mixture import EnvMixture

        cfg = self.config
        policy = policy if policy is not None else self.policy_for(model)
        acollect = self._collector()
        if self.agent_gateway is not None and cfg.rollout_backend == "local":
            # Agents call this step's policy (the adapter it samples with) through the run's
            # one gateway; on Ray each worker runs its own over its ServerPolicy.
            gateway = await asyncio.to_thread(self.agent_gateway.for_policy, policy)
            acollect = functools.partial(acollect, gateway=gateway)
        if not isinstance(self.env, EnvMixture):
            episodes = len(seeds) * cfg.group_size
            return await acollect(
                self.env,
                policy,
                seeds=list(seeds),
                group_size=cfg.group_size,
                concurrency=min(cfg.concurrency, episodes),
                env_kwargs=cfg.env_kwargs or None,
                episode_timeout=cfg.episode_timeout,
                progress=False,
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

        if cfg.concurrency >= len(seeds) * cfg.group_size:
            played = list(await asyncio.gather(*(one(k) for k in order)))
        else:
            played = [await one(k) for k in order]
        out: list[TrajectoryGroup | None] = [None] * len(seeds)
        for k, groups in zip(order, played, strict=True):
            for i, group in zip(positions[k], groups, strict=True):
                out[i] = group
        return out  # type: ignore[return-value]

    async def _score(self, groups: list[TrajectoryGroup]) -> None:
        """Scores a step's groups: the run's reward, else the env's own reward, and the groups
        of agent envs that wait for a group scorer (the run's RULER judge)."""
        await score_groups(groups, self.reward)
        if self.reward is None and self.agent_gateway is not None:
            from envkit.trainers.agents import score_pending

            await score_pending(groups, self.pending_scorers, self.judge)

    def take_branch_rows(self) -> list[Any]:
        """The extra rows (further branches of agent episodes) of the step just returned;
        the backend appends them to TRL's batch (each with its episode's advantage)."""
        rows, self._branch_rows = self._branch_rows, []
        return rows

    def _collector(self) -> Callable[..., Coroutine[Any, Any, list[TrajectoryGroup]]]:
        """``acollect`` of the rollout backend: the local engine, or the run's ``RayRollout``
        (made at the first step; its actors, envs and sandbox pools live until ``close``)."""
        cfg = self.config
        if cfg.rollout_backend == "local":
            from envkit.rollout import acollect

            return acollect
        if self.ray_backend is None:
            from envkit.ray_rollout import RayRollout

            self.ray_backend = RayRollout(
                ray_address=cfg.ray_address,
                workers_per_node=cfg.ray_workers_per_node,
                max_retries=cfg.ray_max_retries,
            )
        return self.ray_backend.acollect

    def __call__(self, inputs: list[dict[str, Any]], trainer: Any) -> dict[str, Any]:
        import torch

        from envkit.trainers._compat import unwrap_for_generation

        cfg = self.config
        tasks = self._group_tasks(inputs)
        seeds = [seed for seed, _ in tasks]
        step = trainer.state.global_step + 1
        rank = trainer.accelerator.process_index
        staleness: dict[str, float] = {}
        if cfg.max_staleness > 0 or self.server_policy is not None:
            groups, rollout_s, reward_s, staleness = self._overlapped(step, tasks, trainer)
        else:
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
            self.loop.run(self._score(groups))
            if self.agent_gateway is not None:
                for group in groups:
                    for traj in group:
                        traj.metrics["behaviour_version"] = trainer.state.global_step
            rollout_s, reward_s = t1 - t0, time.perf_counter() - t1
        rows = self._rows(groups)
        metrics = step_diagnostics(groups, collapse_similarity=cfg.collapse_similarity)
        metrics.update(rows.pop("_metrics"))
        metrics.update(staleness)
        if self.agent_gateway is not None:
            from envkit.trainers.agents import agent_metrics

            metrics.update(agent_metrics(groups))
            metrics["agent/branch_rows"] = float(len(self._branch_rows))
        from envkit.trainers.mixture import EnvMixture, per_env_metrics

        if isinstance(self.env, EnvMixture):
            names = [self.env.names[env] for _, env in tasks]
            metrics.update(per_env_metrics(groups, names))
        metrics["time/rollout_s"] = rollout_s
        metrics["time/reward_s"] = reward_s
        if trainer.accelerator.num_processes > 1:
            metrics = _merge_across_processes(metrics)
        for key, value in metrics.items():
            trainer.record(key, value)
        self.last_groups, self.last_metrics = groups, metrics
        if self.run_dir is not None and cfg.save_trajectories:
            self.run_dir.write_trajectories(step, groups, rank)
        return rows

    # ------------------------------------------------------------------ overlapped rollouts
    def _overlapped(
        self, step: int, tasks: list[tuple[int, int]], trainer: Any
    ) -> tuple[list[TrajectoryGroup], float, float, dict[str, float]]:
        """Step ``step``'s episodes (prefetched when predicted right), then starts the next ones."""
        cfg = self.config
        model = trainer.accelerator.unwrap_model(trainer.model)
        version = trainer.state.global_step  # optimizer steps applied to the weights now
        self._world = trainer.accelerator.num_processes
        self._publish(model, version, rank=trainer.accelerator.process_index)
        pending = self._prefetch.pop(step, None)
        miss = 0.0
        if pending is not None and pending.tasks != tasks:
            miss = 1.0
            _settle(pending.future)  # let it finish: it generates on the shared frozen copy
            pending = None
        if pending is None:
            future = self._submit(step, tasks, trainer.accelerator.process_index)
        else:
            future = pending.future
        last = min(step + cfg.max_staleness, trainer.state.max_steps or step)
        t0 = time.perf_counter()
        groups, used, rollout_s, reward_s = future.result()  # the producer's error, if any
        waited = time.perf_counter() - t0
        for later in range(step + 1, last + 1):
            if later not in self._prefetch:
                predicted = self._predict(later, trainer)
                if predicted is not None:
                    rank = trainer.accelerator.process_index
                    self._prefetch[later] = _Prefetch(
                        predicted, self._submit(later, predicted, rank)
                    )
        lag = float(version - used)
        return (
            groups,
            rollout_s,
            reward_s,
            {
                "staleness/mean": lag,
                "staleness/max": lag,
                "staleness/prefetch_miss": miss,
                "time/rollout_wait_s": waited,
            },
        )

    def _publish(self, model: Any, version: int, rank: int = 0) -> None:
        """Snapshots the trainable (LoRA) weights of ``model`` as adapter ``version`` (server
        mode: the main process, rank 0, saves the adapter for the server to load; the weights
        are the same in every process)."""
        if self._snapshot is not None and self._snapshot[0] == version:
            return
        if self.server_policy is not None:
            folder = self._adapter_root() / f"v{version:06d}"
            if rank == 0:
                model.save_pretrained(str(folder))
            self._snapshot = (version, {"path": folder})
            return
        if self._rollout_model is None:
            import copy

            frozen = copy.deepcopy(model)
            _drop_instance_forwards(frozen)
            frozen.eval()
            frozen.requires_grad_(False)
            self._rollout_model, self._rollout_version = frozen, version
        weights = {
            name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad
        }
        self._snapshot = (version, weights)

    def _adapter_root(self) -> Any:
        """Where the adapters pushed to the server are saved: ``server_adapters`` in the run
        folder, else one temporary folder for the run (removed by ``close``)."""
        from pathlib import Path

        if self.run_dir is not None:
            return self.run_dir.path / "server_adapters"
        if self._adapter_tmp is None:
            import tempfile

            self._adapter_tmp = Path(tempfile.mkdtemp(prefix="envkit-server-adapters-"))
        return self._adapter_tmp

    def _adapter_name(self, version: int) -> str:
        """The server-side name of adapter ``version``: the same in every process of the run."""
        if self.run_dir is not None:
            run = str(self.run_dir.path)
        elif self._world > 1:  # each process has its own temp folder: name by the config
            run = f"{self.config.seed}/{self.config.output_dir}"
        else:
            run = str(self._adapter_root())
        return f"envkit-{derive_seed(run) % 10**8:08d}-v{version}"

    def _push_adapter(self, path: Any, version: int, rank: int) -> None:
        """Has the server load adapter ``version`` and samples with it.

        Only the main process (rank 0) loads each version, unloads old ones and deletes old
        adapter folders; the others wait until the server lists the new name, then use it.
        With several processes the previous version stays loaded too (another process may
        still be sampling with it).
        """
        import shutil

        policy = self.server_policy
        name = self._adapter_name(version)
        if rank == 0:
            policy.load_adapter(path, name)
        else:
            deadline = time.monotonic() + _ADAPTER_WAIT_S
            while name not in policy._served_models():
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the main process did not load adapter {name!r} on the policy server "
                        f"within {_ADAPTER_WAIT_S:.0f} s (did it fail? see its log)"
                    )
                time.sleep(0.2)
        policy.use_adapter(name)
        self._server_adapter = name
        self._server_adapters.append(name)
        keep = 2 if self._world > 1 else 1
        while len(self._server_adapters) > keep:
            old_name = self._server_adapters.pop(0)
            if rank == 0:
                policy.unload_adapter(old_name)
        if rank == 0:
            for old in path.parent.glob("v*"):  # keep the adapter in use and the newest ones
                if old.name < f"v{version - 1:06d}":
                    shutil.rmtree(old, ignore_errors=True)

    def _predict(self, step: int, trainer: Any) -> list[tuple[int, int]] | None:
        """The tasks TRL will hand over for ``step`` (dataset order, this process's share)."""
        rows = self.dataset_tasks
        if not rows:
            return None
        world = trainer.accelerator.num_processes
        per_step = self.config.groups_per_step
        local = per_step // world
        start = (step - 1) * per_step + trainer.accelerator.process_index * local
        return [rows[(start + i) % len(rows)] for i in range(local)]

    def _submit(
        self, step: int, tasks: list[tuple[int, int]], rank: int
    ) -> concurrent.futures.Future[tuple[list[TrajectoryGroup], int, float, float]]:
        return asyncio.run_coroutine_threadsafe(self._produce(step, tasks, rank), self.loop.loop)

    async def _produce(
        self, step: int, tasks: list[tuple[int, int]], rank: int
    ) -> tuple[list[TrajectoryGroup], int, float, float]:
        """Plays and scores one step's episodes on the frozen copy (one step at a time)."""
        import torch

        if self._play_lock is None:
            self._play_lock = asyncio.Lock()
        async with self._play_lock:  # no weight change while a generation is in flight
            snapshot = self._snapshot
            assert snapshot is not None
            version, weights = snapshot
            if version != self._rollout_version:
                if self.server_policy is not None:
                    await asyncio.to_thread(self._push_adapter, weights["path"], version, rank)
                else:
                    params = dict(self._rollout_model.named_parameters())
                    with torch.no_grad():
                        for name, value in weights.items():
                            params[name].copy_(value)
                self._rollout_version = version
            torch.manual_seed(derive_seed(self.config.seed, "rollout", step, rank))
            t0 = time.perf_counter()
            groups = await self.aplay(
                [seed for seed, _ in tasks],
                self._rollout_model,
                [env for _, env in tasks],
                policy=self.server_policy,
            )
            t1 = time.perf_counter()
            await self._score(groups)
            for group in groups:
                for traj in group:
                    traj.metrics["behaviour_version"] = version
            return groups, version, t1 - t0, time.perf_counter() - t1

    def close(self) -> None:
        """Cancels the episodes being prefetched (the loop keeps running); closes the Ray
        backend (its actors end, their sandboxes go)."""
        for pending in self._prefetch.values():
            pending.future.cancel()
        self._prefetch.clear()
        if self.ray_backend is not None:
            self.ray_backend.close()
            self.ray_backend = None
        if self.agent_gateway is not None:
            self.agent_gateway.close()
        if self._adapter_tmp is not None:
            import shutil

            shutil.rmtree(self._adapter_tmp, ignore_errors=True)
            self._adapter_tmp = None

    def _rows(self, groups: list[TrajectoryGroup]) -> dict[str, Any]:
        prompt_ids, completion_ids, masks, logprobs, rewards = [], [], [], [], []
        have_logprobs = True
        render_errors = rerendered = 0
        self._branch_rows = []
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
                if traj.branches and reward is not None:
                    render_errors += self._add_branches(traj, len(rewards) - 1)
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

    def _add_branches(self, traj: Any, row: int) -> int:
        """Queues the further branches of an agent episode as rows trained with the advantage
        of row ``row``; returns how many could not be rendered."""
        from envkit.trainers.agents import BranchRow, branch_sequences

        sequences, errors = branch_sequences(traj, self.stop_token_ids)
        self._branch_rows += [BranchRow(row, seq) for seq in sequences]
        return errors


def _drop_instance_forwards(model: Any) -> None:
    """Restores each module's class ``forward`` on a deep copy of the trained model.

    TRL patches the trained model with an instance-level ``forward`` (``add_fused_lm_head``)
    whose closure holds the *original* model's bound forward. ``copy.deepcopy`` rebinds the
    method to the copy but cannot rewrite the closure, so the copy would still run the live,
    training weights: the "frozen" rollout model would not be frozen, and loading a weight
    snapshot into it would change nothing. Generation needs none of those patches.
    """
    for module in model.modules():
        module.__dict__.pop("forward", None)


def _settle(future: concurrent.futures.Future[Any]) -> None:
    """Waits for a discarded prefetch to stop (its episodes use the shared frozen model)."""
    concurrent.futures.wait([future])  # its outcome (even an error) does not matter


STEP_METRICS: dict[str, Reduction] = {
    "sequences/render_errors": "sum",
    "sequences/rerendered_turns": "sum",
    "staleness/mean": "mean",
    "staleness/max": "max",
    "staleness/prefetch_miss": "max",  # 1 when any process replayed a mispredicted step
    # The step waits for its slowest process.
    "time/rollout_s": "max",
    "time/reward_s": "max",
    "time/rollout_wait_s": "max",
}
"""The metrics ``EpisodeSource`` adds to ``step_diagnostics``' and how a multi-process run
merges each."""


def step_metric_reductions() -> dict[str, Reduction]:
    """Every declared reduction of a step's metrics (diagnostics, per-env, the source's own)."""
    from envkit.trainers.agents import AGENT_METRICS
    from envkit.trainers.mixture import PER_ENV_METRICS

    return {**STEP_DIAGNOSTICS, **PER_ENV_METRICS, **STEP_METRICS, **AGENT_METRICS}


def _merge_across_processes(metrics: dict[str, float]) -> dict[str, float]:
    """Combines every process's step metrics, each by its declared reduction.

    Counts add up, maxima take the max, times the slowest process, means are averaged (each
    process plays the same number of episodes, so the mean of the processes' means is the mean
    over all episodes); an undeclared metric is averaged.
    """
    from accelerate.utils import gather_object

    return merge_metrics(gather_object([metrics]), step_metric_reductions())


def _placeholder(traj: Any, stop_token_ids: Sequence[int]) -> RenderedSequence:
    """A one-token, fully masked row for an episode that cannot be trained on."""
    prompt = list(traj.completions[0].prompt_token_ids or []) if traj.completions else []
    stop = stop_token_ids[0] if stop_token_ids else 0
    return RenderedSequence(
        prompt_ids=prompt or [stop], completion_ids=[stop], mask=[0], logprobs=[0.0]
    )
