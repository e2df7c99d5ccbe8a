"""``GRPOConfig``: every knob of an envkit GRPO + LoRA run, checked when it is built.

A config is a pydantic model: build it in Python, load it from YAML (``GRPOConfig.from_yaml``),
and override single fields from the command line (``config.override(["lr=2e-4"])``). Invalid
values fail at construction with a message that names the field and says what would be valid.

Defaults follow LoRA-for-RL practice: LoRA on all linear layers with rank 16 and alpha 32, a
learning rate of 1e-4 (about 10x the 1e-5 a full fine-tune of a small model would use: a LoRA
update has far fewer effective degrees of freedom and its B matrix starts at zero, so it needs a
larger step to move the policy as far; "LoRA Without Regret", Schulman et al. 2025, measured the
optimal LoRA learning rate at ~10x the full fine-tuning one), group size 8, no KL penalty (so no
reference model copy is kept) and group-relative advantages.

Example:
    >>> from envkit.trainers import GRPOConfig
    >>> cfg = GRPOConfig(max_steps=20, group_size=4)
    >>> cfg.lora_r, cfg.lora_alpha, cfg.learning_rate
    (16, 32, 0.0001)
    >>> cfg.override(["learning_rate=2e-4", "groups_per_step=2"]).learning_rate
    0.0002
    >>> GRPOConfig(group_size=1)
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for GRPOConfig
    group_size
      Input should be greater than or equal to 2 ...
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["GRPOConfig", "ImportanceSampling", "LossType"]

LossType = Literal["dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo"]
ImportanceSampling = Literal[
    "token_truncate", "token_mask", "sequence_truncate", "sequence_mask", "off"
]


class GRPOConfig(BaseModel):
    """Configuration of ``envkit.trainers.GRPOTrainer``; see each field's description."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    # ------------------------------------------------------------------ run
    output_dir: str | None = Field(
        None,
        description="Run folder (config, metrics, trajectories, plots, checkpoints, adapter). "
        "Default: runs/<env>-<timestamp>.",
    )
    seed: int = Field(0, description="Seeds LoRA init, sampling and the order of everything.")
    max_steps: int = Field(100, ge=1, description="Optimizer steps to train for.")
    save_steps: int = Field(
        25, ge=1, description="Save a resumable checkpoint (adapter, optimizer, RNG) every K steps."
    )
    save_total_limit: int | None = Field(
        2, ge=1, description="Keep only the newest N checkpoints (None keeps all)."
    )
    report_to: list[str] = Field(
        default_factory=list,
        description='Extra loggers through transformers\' report_to: "tensorboard", "wandb" '
        "(set WANDB_MODE=offline for W&B offline), ...",
    )
    progress: bool | None = Field(
        None,
        description="Rich live progress view; default: on when stderr is a terminal, otherwise "
        "one plain line per step.",
    )
    save_trajectories: bool = Field(
        True, description="Write each step's trajectories to trajectories/step-NNNNNN.jsonl."
    )

    # ------------------------------------------------------------------ environment and rollouts
    env_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for making the env."
    )
    train_seed_start: int = Field(
        0, ge=0, description="Training task seeds are train_seed_start, +1, +2, ... in order."
    )
    group_size: int = Field(8, ge=2, description="Episodes per task (GRPO's group size G).")
    groups_per_step: int = Field(4, ge=1, description="Tasks per optimizer step.")
    concurrency: int = Field(
        64, ge=1, description="Most episodes in flight at once (env steps and sandbox execs)."
    )
    episode_timeout: float | None = Field(
        None, gt=0, description="Seconds after which an episode is stopped and dropped."
    )

    # ------------------------------------------------------------------ generation
    max_new_tokens: int = Field(256, ge=1, description="Most tokens the policy samples per turn.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    generation_batch_size: int | None = Field(
        None,
        ge=1,
        description="Most sequences the policy samples in one forward batch (default: all the "
        "episodes of a step).",
    )

    # ------------------------------------------------------------------ LoRA
    lora_r: int = Field(16, ge=1, description="LoRA rank r of every adapted layer.")
    lora_alpha: float = Field(32, gt=0, description="LoRA alpha (scale = alpha / r).")
    lora_dropout: float = Field(
        0.0, ge=0, lt=1, description="LoRA dropout (0: sampling and training see the same policy)."
    )
    lora_target_modules: str | list[str] = Field(
        "all-linear", description='Modules that get LoRA: "all-linear" or a list of names.'
    )

    # ------------------------------------------------------------------ optimisation
    learning_rate: float = Field(
        1e-4, gt=0, description="AdamW learning rate (about 10x full fine-tuning; see module doc)."
    )
    lr_scheduler_type: str = Field("constant", description="transformers scheduler name.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping (0 disables).")
    micro_batches: int | None = Field(
        None,
        ge=1,
        description="Split each step's sequences into this many forward/backward passes "
        "(gradient accumulation) to bound memory. None: automatic for dapo/cispo (at most 4 "
        "sequences per pass on CPU, 16 on CUDA; exact for those losses), else 1.",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward (saves memory, costs time)."
    )

    # ------------------------------------------------------------------ GRPO
    loss_type: LossType = Field(
        "dapo", description="TRL loss: dapo (token-level, TRL's default), grpo, dr_grpo, ..."
    )
    beta: float = Field(
        0.0, ge=0, description="KL penalty to the base model (0: none, no reference pass)."
    )
    epsilon: float = Field(0.2, gt=0, description="PPO clip range (lower side).")
    epsilon_high: float | None = Field(
        None, gt=0, description="Upper clip range (default: epsilon; DAPO uses 0.28)."
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="Divide advantages by the group's reward std, the batch's, or not."
    )
    drop_zero_signal: bool = Field(
        True,
        description="Leave out of the backward pass the groups whose rewards all tie "
        "(advantage 0) and judge-error / failed episodes (reward unknown); they are counted.",
    )
    mask_truncated_completions: bool = Field(
        False, description="Exclude episodes whose last turn hit max_new_tokens from the loss."
    )

    # ------------------------------------------------------------------ devices
    device: str = Field(
        "auto",
        description="auto (CUDA when available, else CPU), cpu, cuda or cuda:N.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on CUDA, float32 on CPU."
    )
    load_in_4bit: bool = Field(
        False, description="Quantize the base model to 4 bits (QLoRA; CUDA + bitsandbytes)."
    )
    use_vllm: bool = Field(
        False, description="Sample with vLLM (colocated, CUDA, vllm installed) instead of HF."
    )
    torch_threads: int | None = Field(
        None, ge=1, description="torch CPU threads (default: torch's choice)."
    )

    # ------------------------------------------------------------------ off-policy rollouts
    max_staleness: int = Field(
        0,
        ge=0,
        description="0: synchronous (each step samples with the weights it trains). k > 0: the "
        "episodes of the next steps are played while the current step trains, with an adapter at "
        "most k optimizer steps old (PipelineRL / TRL async GRPO); the loss corrects the lag with "
        "importance_sampling.",
    )
    importance_sampling: ImportanceSampling = Field(
        "token_truncate",
        description="Correction for episodes sampled by another policy than the one trained "
        "(max_staleness > 0 or policy_server): the loss of each token is weighted by "
        "pi_train/pi_behaviour, truncated at importance_sampling_cap (token_truncate: truncated "
        "IS, Yao et al. 2025), or tokens/episodes above the cap are dropped (*_mask); sequence_* "
        "uses one ratio per episode. As TRL's vllm_importance_sampling_mode. off: no correction.",
    )
    importance_sampling_cap: float = Field(
        3.0,
        gt=1.0,
        description="Upper bound C of the importance ratio (TRL's vllm_importance_sampling_"
        "clip_max default 3.0; Yao et al. 2025 report C=2 as well; envkit keeps TRL's value so "
        "a run reads the same as a TRL run).",
    )
    policy_server: str | None = Field(
        None,
        description="Base URL of an OpenAI/vLLM-compatible server (e.g. http://127.0.0.1:8000) "
        "to sample rollouts with (envkit.policies.ServerPolicy); the trainer saves the adapter "
        "after each optimizer step and has the server load it (vLLM runtime LoRA endpoints).",
    )
    policy_server_model: str | None = Field(
        None, description="The base model name the policy_server serves (needs policy_server)."
    )
    rollout_backend: Literal["local", "ray"] = Field(
        "local",
        description="Where episodes run: local (this process's event loop) or ray (Ray workers; "
        "needs policy_server: a torch model cannot travel to the workers).",
    )
    ray_address: str | None = Field(
        None,
        description='Ray cluster address for rollout_backend="ray" (None: start or join '
        "a local one).",
    )
    ray_workers_per_node: int = Field(
        1,
        ge=1,
        description='Ray actors per alive node with rollout_backend="ray" (each one process '
        "with its own envs and sandbox pool; they live for the whole run).",
    )
    ray_max_retries: int = Field(
        0,
        ge=0,
        description="Times a group lost with its Ray actor (killed process, node gone) is "
        "replayed on a live actor; 0: its episodes become infra_error trajectories.",
    )

    # ------------------------------------------------------------------ group judge
    judge_model: str | None = Field(
        None,
        description="litellm model of the run's RULER judge (envkit.rewards.RulerJudge): it "
        "scores the groups of envs that ask for it (an AgentEnv without a reward: "
        'reward_pending == "ruler"); envs with their own reward keep it. --judge MODEL.',
    )
    judge_api_base: str | None = Field(
        None, description="API base URL of judge_model (an OpenAI-compatible server)."
    )

    # ------------------------------------------------------------------ diagnostics and eval
    kl_to_base_every: int = Field(
        10,
        ge=0,
        description="Every N steps, log the KL of the policy to the base model (adapter "
        "disabled, one extra forward pass); 0 never.",
    )
    collapse_similarity: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Warn when the mean pairwise similarity of a step's in-group completions "
        "exceeds this (diversity collapse).",
    )
    eval_every: int = Field(
        0, ge=0, description="Evaluate on held-out seeds every N steps; 0 never."
    )
    eval_episodes: int = Field(32, ge=1, description="Held-out episodes per evaluation.")
    eval_seed_start: int = Field(
        1_000_000_000, ge=0, description="Held-out seeds start here (disjoint from training seeds)."
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        from envkit.devices import check_device_spec

        return check_device_spec(value)

    @model_validator(mode="after")
    def _check(self) -> GRPOConfig:
        per_step = self.group_size * self.groups_per_step
        if self.micro_batches is not None and per_step % self.micro_batches:
            raise ValueError(
                f"micro_batches={self.micro_batches} must divide the {per_step} episodes of a "
                f"step (group_size {self.group_size} x groups_per_step {self.groups_per_step})"
            )
        last_train_seed = self.train_seed_start + self.max_steps * self.groups_per_step
        last_eval_seed = self.eval_seed_start + self.eval_episodes
        if self.eval_seed_start < last_train_seed and self.train_seed_start < last_eval_seed:
            raise ValueError(
                f"held-out seeds {self.eval_seed_start}..{last_eval_seed - 1} overlap the "
                f"training seeds {self.train_seed_start}..{last_train_seed - 1}; pick a larger "
                "eval_seed_start"
            )
        if self.rollout_backend == "ray" and self.policy_server is None:
            raise ValueError(
                'rollout_backend="ray" needs policy_server: Ray workers cannot share the torch '
                "model being trained; serve it (envkit serve / vLLM with LoRA) and pass its URL"
            )
        if self.rollout_backend != "ray":
            for name, default in (
                ("ray_address", None),
                ("ray_workers_per_node", 1),
                ("ray_max_retries", 0),
            ):
                if getattr(self, name) != default:
                    raise ValueError(f'{name} is only used with rollout_backend="ray"; set both')
        if self.judge_api_base is not None and self.judge_model is None:
            raise ValueError("judge_api_base is the API of judge_model; set judge_model too")
        if self.policy_server_model is not None and self.policy_server is None:
            raise ValueError("policy_server_model names the model of policy_server; set both")
        if self.max_staleness and self.use_vllm:
            raise ValueError(
                "max_staleness > 0 does not combine with use_vllm (colocated vLLM samples on the "
                "training GPU in step); use policy_server for a separate vLLM server"
            )
        if self.policy_server is not None and self.use_vllm:
            raise ValueError("use_vllm and policy_server are two ways of sampling; choose one")
        if self.epsilon_high is not None and self.epsilon_high < self.epsilon:
            raise ValueError(
                f"epsilon_high ({self.epsilon_high}) must be >= epsilon ({self.epsilon})"
            )
        return self

    @property
    def importance_sampling_active(self) -> bool:
        """Whether the loss is importance-weighted: the behaviour policy may differ from the
        trained one (``max_staleness > 0`` or ``policy_server``) and the correction is on."""
        off_policy = self.max_staleness > 0 or self.policy_server is not None
        return off_policy and self.importance_sampling != "off"

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_yaml(cls, path: str | Path, overrides: Iterable[str] = ()) -> GRPOConfig:
        """Loads a YAML mapping of fields, then applies ``KEY=VALUE`` overrides.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: the YAML is not a mapping, a key is unknown (with suggestions) or a value
                is invalid.
        """
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, Mapping):
            raise ValueError(
                f"{path}: a config file must be a YAML mapping of fields, got {type(data).__name__}"
            )
        _check_keys(data, f"{path}")
        return cls.model_validate(dict(data)).override(overrides)

    def override(self, items: Iterable[str] | Mapping[str, Any]) -> GRPOConfig:
        """A copy with fields replaced: ``["key=value", ...]`` or a dict.

        Items are read like every CLI ``KEY=VALUE`` (``envkit._kv``): VALUE is JSON when it
        parses, ``[...]``/``{...}`` may be YAML flow style, anything else is the plain string.

        Raises:
            ValueError: an item is not ``key=value``, a key is unknown or a value invalid.
        """
        from envkit._kv import parse_items

        if isinstance(items, Mapping):
            updates = dict(items)
        else:
            updates = parse_items(items, example="learning_rate=2e-4")
        if not updates:
            return self
        _check_keys(updates, "override")
        return type(self).model_validate({**self.model_dump(), **updates})

    def to_yaml(self, path: str | Path) -> None:
        """Writes the config as YAML (loadable by ``from_yaml``)."""
        import yaml

        Path(path).write_text(yaml.safe_dump(self.model_dump(), sort_keys=False), encoding="utf-8")

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """``(name, default, description)`` of every field, for docs and ``--help``."""
        rows = []
        for name, f in cls.model_fields.items():
            default = f.default_factory() if f.default_factory else f.default  # type: ignore[call-arg]
            rows.append((name, json.dumps(default), f.description or ""))
        return rows


def _check_keys(data: Mapping[str, Any], where: str) -> None:
    known = set(GRPOConfig.model_fields)
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"{where}: unknown GRPOConfig field {key!r}{hint}")
