"""``GRPOTrainer``: GRPO + LoRA on any registered envkit environment.

Point it at an env id (or factory), a model and optionally a reward; ``train()`` leaves a LoRA
adapter that does measurably better and a run folder that shows why (see
``envkit.trainers.run_dir``). Episodes are played by envkit's async engine; the loss, optimizer,
checkpoints and multi-process plumbing are TRL's and transformers' (``envkit.trainers.backend``).

Example:
    >>> import tempfile
    >>> from envkit.trainers import GRPOConfig, GRPOTrainer
    >>> cfg = GRPOConfig(max_steps=2, group_size=4, groups_per_step=2, max_new_tokens=8,
    ...                  progress=False, output_dir=tempfile.mkdtemp() + "/run")
    >>> with GRPOTrainer("tiny-random", "Arithmetic-v0", config=cfg) as trainer:
    ...     result = trainer.train()
    >>> result.adapter_dir.name
    'adapter'
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from envkit._tokens import stop_token_ids
from envkit.trainers.config import GRPOConfig
from envkit.trainers.mixture import EnvMixture
from envkit.trainers.run_dir import RunDir

__all__ = ["GRPOTrainer", "TrainResult"]


class TrainResult:
    """What ``GRPOTrainer.train`` returns.

    Attributes:
        run_dir: The run folder.
        adapter_dir: The final LoRA adapter (peft format).
        steps: Optimizer steps done (in total, including before a resume).
        resumed_from: The step the run resumed from, or ``None``.
    """

    def __init__(self, run_dir: Path, adapter_dir: Path, steps: int, resumed_from: int | None):
        self.run_dir = run_dir
        self.adapter_dir = adapter_dir
        self.steps = steps
        self.resumed_from = resumed_from

    def __repr__(self) -> str:
        return f"TrainResult(run_dir={str(self.run_dir)!r}, steps={self.steps})"


def _as_mixture(env: Any) -> Any:
    """An ``EnvMixture`` for a mixture or a list/tuple of envs; ``None`` for one env."""
    from envkit.trainers.mixture import EnvMixture

    if isinstance(env, EnvMixture):
        return env
    if isinstance(env, list | tuple):
        return EnvMixture(env)
    return None


def _env_name(env: Any) -> str:
    from envkit.trainers.mixture import EnvMixture, metric_name

    if isinstance(env, EnvMixture):
        return "mix-" + "+".join(metric_name(n) for n in env.names)
    if isinstance(env, str):
        from envkit.registration import full_id

        return full_id(env)
    return getattr(env, "__name__", type(env).__name__)


def _default_output_dir(env: Any) -> str:
    name = _env_name(env).replace("/", "-")
    return os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def _check_env(env: Any, env_kwargs: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
    """Fails fast (unknown id, bad kwargs) instead of at the first step.

    Returns:
        Whether any env is an agent env (``envkit.AgentEnv``), and the group scorers its
        episodes wait for (``envkit.trainers.agents.group_scorers``).
    """
    from envkit.environments.agent import AgentEnv
    from envkit.registration import make_chat_env
    from envkit.trainers.agents import group_scorers
    from envkit.trainers.mixture import EnvMixture

    if isinstance(env, EnvMixture):
        env.check(env_kwargs)
        made = [(e.env, env.env_kwargs(i, env_kwargs)) for i, e in enumerate(env.entries)]
    else:
        made = [(env, env_kwargs)]
    agents, scorers = False, {}
    for source, kwargs in made:
        instance = make_chat_env(source, **kwargs) if isinstance(source, str) else source(**kwargs)
        try:
            agents = agents or isinstance(getattr(instance, "unwrapped", instance), AgentEnv)
            scorers.update(group_scorers(instance))
        finally:
            instance.close()
    return agents, scorers


def _run_judge(cfg: GRPOConfig, reward: Any, scorers: dict[str, Any]) -> Any:
    """The RULER judge of agent envs without a reward (``None`` when none needs it).

    Raises:
        ValueError: an agent env is scored by the RULER judge, and the run has none.
    """
    from envkit.environments.agent import GROUP_JUDGE

    if reward is not None or GROUP_JUDGE not in scorers:
        return None
    if cfg.judge_model is None:
        raise ValueError(
            "this agent env has no reward, so its groups are scored by a RULER judge, and the "
            "run has none: pass --judge MODEL (GRPOConfig(judge_model=...), a litellm model "
            "such as openai/gpt-4.1-mini; judge_api_base for an OpenAI-compatible server), or "
            "give a reward (--reward NAME, AgentEnv(reward=...), GRPOTrainer(reward=...))"
        )
    from envkit.rewards.judge import RulerJudge

    if cfg.judge_api_base is not None:
        return RulerJudge(model=cfg.judge_model, api_base=cfg.judge_api_base)
    return RulerJudge(model=cfg.judge_model)


class GRPOTrainer:
    """Trains a LoRA adapter on an envkit environment with GRPO.

    Args:
        model: ``"smollm2-135m"``, ``"tiny-random"``, a HF model directory or hub id, a
            ``(model, tokenizer)`` pair, or a model instance with ``tokenizer=``.
        env: A registered env id (``"Arithmetic-v0"``; an agent registered with
            ``envkit.register_agent`` trains through the run's gateway, see docs/agents.md),
            a factory returning a ``ChatEnv``, or
            several envs: an ``EnvMixture`` or a list of ids / ``(id, weight)`` /
            ``(id, weight, kwargs)`` items. Each GRPO group is drawn from one env of a mixture
            by weight (deterministic in ``config.seed``); ``config.env_kwargs`` apply to every
            env, an entry's own kwargs on top.
        reward: ``None`` to train on the env's own reward, or a reward name, function,
            ``Rubric`` or ``RulerJudge`` from ``envkit.rewards``.
        config: The run's ``GRPOConfig``.
        tokenizer: The tokenizer when ``model`` is a model instance.
        train_seeds: Task seeds to train on, in order (cycled when shorter than the run);
            default ``config.train_seed_start, +1, ...``.

    Raises:
        ValueError: the config does not fit the number of processes, the env id is unknown,
            a mixture is invalid (weights, ids, kwargs), or an agent env without a reward
            has no RULER judge (``config.judge_model``) and no ``reward`` is given.
    """

    def __init__(
        self,
        model: Any,
        env: str | Callable[..., Any] | EnvMixture | Sequence[Any],
        reward: Any = None,
        config: GRPOConfig | None = None,
        *,
        tokenizer: Any = None,
        train_seeds: Sequence[int] | None = None,
    ) -> None:
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
        env = _as_mixture(env) or env
        self.config = cfg = config or GRPOConfig()
        if cfg.output_dir is None:
            cfg = self.config = cfg.model_copy(update={"output_dir": _default_output_dir(env)})
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if cfg.groups_per_step % world:
            raise ValueError(
                f"groups_per_step={cfg.groups_per_step} must be a multiple of the {world} "
                "processes, so that every process plays whole groups"
            )
        if (
            cfg.micro_batches
            and (cfg.groups_per_step // world * cfg.group_size) % cfg.micro_batches
        ):
            raise ValueError(
                f"micro_batches={cfg.micro_batches} must divide the episodes per process "
                f"({cfg.groups_per_step // world * cfg.group_size})"
            )
        agents, scorers = _check_env(env, cfg.env_kwargs)
        judge = _run_judge(cfg, reward, scorers) if agents else None
        if cfg.use_vllm:
            _check_vllm()
        if cfg.torch_threads is not None:
            import torch

            torch.set_num_threads(cfg.torch_threads)
        self.env = env
        self.reward = reward
        self.run = RunDir(cfg.output_dir)  # type: ignore[arg-type]
        instance = model[0] if isinstance(model, tuple) else model
        self.model_name = model if isinstance(model, str) else type(instance).__name__
        seeds = list(train_seeds) if train_seeds is not None else None
        if seeds is not None and len(seeds) < cfg.groups_per_step:
            raise ValueError(
                f"train_seeds has {len(seeds)} seeds; a step needs {cfg.groups_per_step}"
            )
        self._train_seeds = seeds
        self._eval_policy: Any = None
        self._build(model, tokenizer, world)
        if agents:
            from envkit.trainers.agents import RunGateway

            self.episodes.agent_gateway = RunGateway(self.run.path / "gateway")
            self.episodes.judge = judge
            self.episodes.pending_scorers = scorers

    # ------------------------------------------------------------------ construction
    def _build(self, model_spec: Any, tokenizer: Any, world: int) -> None:
        from envkit.devices import describe
        from envkit.trainers import _compat
        from envkit.trainers.backend import TRLBackend
        from envkit.trainers.batch import auto_micro_batches
        from envkit.trainers.episodes import BackgroundLoop, EpisodeSource
        from envkit.trainers.modeling import load_base_model, lora_config, resolve_device

        _compat.check()  # before loading anything: a TRL/transformers that lacks what we use
        cfg = self.config
        model, tok = load_base_model(model_spec, cfg, tokenizer)
        self.tokenizer = tok
        self.device = resolve_device(cfg)
        if cfg.micro_batches is None:
            # Unset: bound the tokens of a forward/backward pass (peak memory); dapo and cispo
            # normalize over the whole step, so the split leaves their gradient unchanged.
            per_process = cfg.groups_per_step // world * cfg.group_size
            exact = cfg.loss_type in ("dapo", "cispo")
            micro = auto_micro_batches(per_process, self.device) if exact else 1
            self.config = cfg = cfg.model_copy(update={"micro_batches": micro})
        self.runtime = describe(model)
        """``{"device": ..., "dtype": ...}`` the base model runs on (shown in run summaries)."""
        self.loop = BackgroundLoop()
        stop_ids = stop_token_ids(model, tok)  # the same ids HFPolicy stops at
        self.episodes = EpisodeSource(
            self.env,
            cfg,
            make_policy=self._make_policy,
            reward=self.reward,
            stop_token_ids=stop_ids,
            run_dir=self.run,
            loop=self.loop,
        )
        if cfg.policy_server is not None:
            self.episodes.server_policy = self._server_policy(model_spec, tok)
            self.episodes.server_policy.check_logprobs(model)  # raw vLLM logprobs: refuse
        args = _trl_args(cfg, self.run, self.device, world, model)
        dataset = self._dataset()
        self.episodes.dataset_tasks = [
            (int(seed), int(env))
            for seed, env in zip(
                dataset["envkit_seed"],
                dataset["envkit_env"]
                if "envkit_env" in dataset.column_names
                else [0] * len(dataset),
                strict=True,
            )
        ]
        self.backend = TRLBackend(
            episodes=self.episodes,
            drop_zero_signal=cfg.drop_zero_signal,
            kl_to_base_every=cfg.kl_to_base_every,
            importance_sampling=cfg.importance_sampling
            if cfg.importance_sampling_active
            else "off",
            importance_sampling_cap=cfg.importance_sampling_cap,
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tok,
            peft_config=lora_config(cfg),
        )
        _quiet_printer(self.backend)
        if "tensorboard" in cfg.report_to and self.backend.accelerator.is_main_process:
            from torch.utils.tensorboard import SummaryWriter
            from transformers.integrations import TensorBoardCallback

            writer = SummaryWriter(log_dir=str(self.run.path / "tensorboard"))
            self.backend.add_callback(TensorBoardCallback(tb_writer=writer))

    def _server_policy(self, model_spec: Any, tokenizer: Any) -> Any:
        """The ``ServerPolicy`` rollouts sample with (``policy_server``)."""
        from envkit.policies.server import ServerPolicy

        cfg = self.config
        name = cfg.policy_server_model or (model_spec if isinstance(model_spec, str) else None)
        if name is None:
            raise ValueError(
                "policy_server needs policy_server_model (the name the server serves the base "
                "model under) when the model is not given by name"
            )
        return ServerPolicy(
            cfg.policy_server,  # type: ignore[arg-type]
            name,
            tokenizer=tokenizer,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_concurrency=cfg.concurrency,
            seed=cfg.seed,
        )

    def _make_policy(self, model: Any, *, for_training: bool = True) -> Any:
        from envkit.trainers.modeling import make_policy

        cfg = self.config
        batch = cfg.groups_per_step * cfg.group_size
        kwargs = {
            "max_new_tokens": cfg.max_new_tokens,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            # Evaluation plays many one-episode tasks at once: larger batches, fewer generates.
            "max_batch_size": cfg.generation_batch_size
            or (batch if for_training else max(batch, 64)),
        }
        if cfg.use_vllm and for_training:
            from envkit.trainers._compat import vllm_engine
            from envkit.trainers.vllm_policy import VLLMPolicy

            return VLLMPolicy(vllm_engine(self.backend), model, self.tokenizer, **kwargs)
        return make_policy(model, self.tokenizer, **kwargs)

    def _dataset(self) -> Any:
        from datasets import Dataset

        cfg = self.config
        if self._train_seeds is not None:
            seeds = self._train_seeds
        else:
            n = cfg.max_steps * cfg.groups_per_step
            seeds = list(range(cfg.train_seed_start, cfg.train_seed_start + n))
        columns: dict[str, list[Any]] = {
            "prompt": [f"envkit task seed {s}" for s in seeds],
            "envkit_seed": seeds,
        }
        if isinstance(self.env, EnvMixture):  # which env each group plays, fixed by the seed
            columns["envkit_env"] = self.env.assign(len(seeds), cfg.seed)
        return Dataset.from_dict(columns)

    @property
    def model(self) -> Any:
        """The peft model being trained (base + LoRA adapter)."""
        return self.backend.accelerator.unwrap_model(self.backend.model)

    # ------------------------------------------------------------------ training
    def train(self, *, resume: bool = False) -> TrainResult:
        """Runs ``config.max_steps`` steps (continuing from the last checkpoint with ``resume``).

        Raises:
            FileExistsError: the run folder already holds a run and ``resume`` is False.
        """
        from envkit.trainers.callbacks import RunCallback
        from envkit.trainers.progress import TrainProgress

        cfg = self.config
        run = self.run
        checkpoint = None
        resumed_from = None
        elapsed = 0.0
        accelerator = self.backend.accelerator
        main = accelerator.is_main_process
        if run.exists() and not resume:
            raise FileExistsError(
                f"{run.path} already holds a run; pass resume=True (--resume) to continue it or "
                "choose another output_dir (--out)"
            )
        if resume:
            last = run.last_checkpoint()
            resumed_from = last[0] if last else 0
            if last is not None:
                checkpoint = str(last[1])
                elapsed = float(_read_marker(last[1]).get("elapsed_s", 0.0))
        accelerator.wait_for_everyone()  # every process looked before the main one writes
        if main:
            if resumed_from is not None:
                run.rewind(resumed_from)
            run.mkdir()
            cfg.to_yaml(run.config_path)
            run.write_run_info(self._run_info())
        accelerator.wait_for_everyone()
        tty = sys.stderr.isatty()
        progress_on = cfg.progress if cfg.progress is not None else tty
        progress = TrainProgress(
            cfg.max_steps,
            enabled=progress_on and main,
            start_step=resumed_from or 0,
            plain=cfg.progress is None and not tty and main,
        )
        callback = RunCallback(
            run,
            progress,
            collapse_similarity=cfg.collapse_similarity,
            evaluate=self._eval_metrics if cfg.eval_every else None,
            eval_every=cfg.eval_every,
            elapsed_offset=elapsed,
        )
        self.backend.add_callback(callback)
        try:
            self._train(callback, checkpoint, main)
        finally:
            progress.close()
            self.backend.remove_callback(callback)
        return TrainResult(
            run.path, run.adapter_dir, int(self.backend.state.global_step), resumed_from
        )

    def _train(self, callback: Any, checkpoint: str | None, main: bool) -> None:
        with warnings.catch_warnings():
            # Noise from the libraries underneath that a user of envkit cannot act on.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            warnings.filterwarnings("ignore", message="Could not find a config file in")
            if self.config.eval_every and checkpoint is None and main:
                callback.eval_row(0)
            self.backend.train(resume_from_checkpoint=checkpoint)
            self.backend.save_model(str(self.run.adapter_dir))

    def _run_info(self) -> dict[str, Any]:
        import envkit

        mixture = (
            {"env": self.env.describe(), "envs": self.env.spec()}
            if isinstance(self.env, EnvMixture)
            else {"env": _env_name(self.env)}
        )
        return {
            **mixture,
            "model": self.model_name,
            "reward": _reward_spec(self.reward),
            "envkit_version": envkit.__version__,
            **self.runtime,
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        }

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        seeds: Sequence[int] | None = None,
        *,
        adapter: bool = True,
        group_size: int = 1,
    ) -> list[Any]:
        """Plays held-out episodes with the current policy (or the base with ``adapter=False``).

        Sampling uses the run's temperature with a fixed generator seed, so the base and the
        trained adapter are compared on the same tasks with the same sampling noise.

        Args:
            seeds: Task seeds (default: ``config.eval_episodes`` seeds from ``eval_seed_start``).
            adapter: Use the LoRA adapter (False: the base model).
            group_size: Episodes per seed.

        Returns:
            The ``TrajectoryGroup`` of each seed, scored like training episodes (for a mixture:
            every env plays every seed; groups are in env order, each with its ``env_id``).
        """
        import torch

        from envkit.trainers.episodes import derive_seed

        cfg = self.config
        if seeds is None:
            seeds = range(cfg.eval_seed_start, cfg.eval_seed_start + cfg.eval_episodes)
        model = self.model
        was_training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(cfg.seed, "eval"))
                if adapter:
                    groups = self._play(seeds, group_size, model)
                else:
                    with model.disable_adapter():
                        groups = self._play(seeds, group_size, model)
        finally:
            model.train(was_training)
        self.loop.run(self.episodes._score(groups))
        return groups

    def _play(self, seeds: Sequence[int], group_size: int, model: Any) -> list[Any]:
        from envkit.rollout import acollect

        cfg = self.config
        if self._eval_policy is None:
            self._eval_policy = self._make_policy(model, for_training=False)
        if isinstance(self.env, EnvMixture):
            envs = [
                (e.env, self.env.env_kwargs(i, cfg.env_kwargs))
                for i, e in enumerate(self.env.entries)
            ]
        else:
            envs = [(self.env, cfg.env_kwargs)]
        groups: list[Any] = []
        for env, env_kwargs in envs:
            groups += self.loop.run(
                acollect(
                    env,
                    self._eval_policy,
                    seeds=list(seeds),
                    group_size=group_size,
                    concurrency=cfg.concurrency,
                    env_kwargs=env_kwargs or None,
                    episode_timeout=cfg.episode_timeout,
                    progress=False,
                )
            )
        return groups

    def _eval_metrics(self, step: int) -> dict[str, float]:
        from envkit.metrics import summarize

        groups = self.evaluate()
        summary = summarize(groups)
        out = {
            "eval/reward_mean": summary.mean_reward
            if summary.mean_reward is not None
            else float("nan"),
            "eval/episodes": float(summary.episodes),
        }
        if isinstance(self.env, EnvMixture):
            from envkit.trainers.mixture import per_env_metrics

            per_env = per_env_metrics(groups, [g.env_id for g in groups])
            for key, value in per_env.items():  # env/<id>/reward/mean -> eval/env/<id>/...
                if key.endswith("/reward/mean"):
                    out[f"eval/{key.removesuffix('/reward/mean')}/reward_mean"] = value
        return out

    def close(self) -> None:
        """Stops the background rollout loop (the trainer cannot train after this)."""
        self.episodes.close()
        self.loop.close()

    def __enter__(self) -> GRPOTrainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_vllm() -> None:
    import importlib.util

    import torch

    if not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None:
        raise RuntimeError(
            "use_vllm needs a CUDA GPU and the vllm package (pip install vllm); without them "
            "leave use_vllm off: envkit samples with HFPolicy (transformers)"
        )


def _reward_spec(reward: Any) -> Any:
    """How run.json records the reward: None, a registered name, {"judge": model} or a repr."""
    if reward is None or isinstance(reward, str):
        return reward
    from envkit.rewards.judge import RulerJudge  # litellm is imported only when it judges

    if isinstance(reward, RulerJudge):
        return {"judge": reward.model}
    return {"repr": getattr(reward, "__name__", None) or repr(reward)}


def _read_marker(checkpoint: Path) -> dict[str, Any]:
    import json

    from envkit.trainers.run_dir import COMPLETE_MARKER

    try:
        return json.loads((checkpoint / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _quiet_printer(backend: Any) -> None:
    """Removes transformers' print/tqdm callbacks: envkit shows its own progress."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback  # see _compat

    backend.remove_callback(PrinterCallback)
    backend.remove_callback(ProgressCallback)


def _trl_args(cfg: GRPOConfig, run: RunDir, device: str, world: int, model: Any) -> Any:
    import torch
    import trl

    from envkit.trainers import _compat

    per_process = cfg.groups_per_step // world * cfg.group_size
    dtype = getattr(model, "dtype", torch.float32)
    report_to = [r for r in cfg.report_to if r != "tensorboard"] or "none"
    return trl.GRPOConfig(
        output_dir=str(run.checkpoints_dir),
        seed=cfg.seed,
        data_seed=cfg.seed,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        per_device_train_batch_size=per_process // cfg.micro_batches,
        gradient_accumulation_steps=cfg.micro_batches,
        num_generations=cfg.group_size,
        max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        epsilon_high=cfg.epsilon_high,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        mask_truncated_completions=cfg.mask_truncated_completions,
        **_compat.checkpointing_args(cfg.gradient_checkpointing),
        bf16=device.startswith("cuda") and dtype == torch.bfloat16,
        fp16=device.startswith("cuda") and dtype == torch.float16,
        use_cpu=device == "cpu",
        use_vllm=cfg.use_vllm,
        vllm_mode="colocate",
        # envkit's sampled log-probabilities need not follow vLLM's logprob mode: no IS correction.
        vllm_importance_sampling_correction=False,
        logging_steps=1,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=report_to,
        shuffle_dataset=False,
        remove_unused_columns=False,
        disable_tqdm=True,
        log_level="warning",
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
    )
