"""The TRL side of envkit's trainer: ``trl.GRPOTrainer`` driven by envkit's rollout engine.

``TRLBackend`` subclasses ``trl.GRPOTrainer`` and changes three things, nothing in the loss:

* generation goes through TRL's ``rollout_func`` hook to an ``EpisodeSource`` (see
  ``envkit.trainers.episodes``), which plays whole multi-turn episodes with envkit's async engine
  and returns one sequence per episode with an ``env_mask`` (env/tool tokens 0) and the sampled
  log-probabilities; the env's reward (or the user's reward/judge) comes back as an extra field
  that the single TRL reward function passes through;
* after TRL computed group-relative advantages, episodes with zero advantage (groups whose rewards
  tie, unknown rewards) are left out of the backward pass when ``beta == 0`` (they contribute
  exactly zero to the policy-gradient term), padding is trimmed, and the rest is split into
  micro-batches (``trainers.batch``);
* episodes sampled by another policy than the one trained (overlapped rollouts, an inference
  server) are importance-weighted: the backend computes the trained model's log-probabilities of
  the sampled tokens and the truncated ratio to the behaviour log-probabilities
  (``envkit.trainers.importance``), and TRL's own loss multiplies each token by it (the code path
  TRL runs for vLLM's ``vllm_importance_sampling_correction``, enabled only around the loss);
* a few diagnostics TRL does not compute (KL to the base with the adapter disabled, episode-level
  metrics from the episode source) are added to TRL's metric log.

Everything else (the clipped surrogate loss and its variants, AdamW, schedulers, gradient
accumulation, ``accelerate`` multi-process, checkpoints with optimizer/scheduler/RNG states,
``report_to`` loggers) is TRL's and transformers' own code. The private TRL members used here
are listed and checked at construction in ``envkit.trainers._compat``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import trl

from envkit.trainers import _compat
from envkit.trainers.batch import keep_rows, loss_mask, split_rows

__all__ = ["TRLBackend", "passthrough_reward", "release_memory"]


def release_memory() -> None:
    """Returns the memory the previous step freed to the OS (``gc`` + glibc ``malloc_trim``).

    A step's forward/backward frees hundreds of MB of activations in many blocks; glibc keeps
    them in its arenas (one per thread that allocated), so the process's RSS only ever grows
    and whatever else runs next (sampling, the next trainer in the same process) starts from
    the high-water mark. A no-op where the C library has no ``malloc_trim`` (musl, macOS).
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    global _TRIM
    if _TRIM is None:
        try:
            _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM: Any = None


def passthrough_reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[Any]:
    """TRL reward function: the rewards the episode source already computed (None = unknown)."""
    return list(kwargs["envkit_reward"])


class TRLBackend(trl.GRPOTrainer):
    """``trl.GRPOTrainer`` whose completions are whole envkit episodes (see the module doc).

    Args:
        episodes: Called as ``episodes(inputs, trainer)`` with the dataset rows of the local
            generation batch; returns TRL's rollout dict (prompt_ids, completion_ids, logprobs,
            env_mask, envkit_reward) and may record metrics with ``trainer.log_metric``.
        drop_zero_signal: Leave zero-advantage episodes out of the backward pass.
        kl_to_base_every: Log ``kl_to_base`` every N steps (0: never).
        importance_sampling: ``"off"`` or a mode of ``envkit.trainers.importance.MODES``: weight
            each token's loss by the truncated ratio of the trained to the behaviour policy.
        importance_sampling_cap: The ratio's bound C.
        **kwargs: Passed to ``trl.GRPOTrainer``.
    """

    def __init__(
        self,
        *,
        episodes: Callable[[list[dict[str, Any]], TRLBackend], dict[str, Any]],
        drop_zero_signal: bool = True,
        kl_to_base_every: int = 0,
        importance_sampling: str = "off",
        importance_sampling_cap: float = 3.0,
        **kwargs: Any,
    ) -> None:
        from envkit.trainers.importance import MODES

        if importance_sampling != "off" and importance_sampling not in MODES:
            raise ValueError(f"importance_sampling must be 'off' or one of {MODES}")
        self._episodes = episodes
        self._is_mode = importance_sampling
        self._is_cap = float(importance_sampling_cap)
        self._drop_zero_signal = drop_zero_signal
        self._kl_every = kl_to_base_every
        self._pending_inputs: list[dict[str, Any]] | None = None
        _compat.check()
        super().__init__(rollout_func=self._rollout, reward_funcs=[passthrough_reward], **kwargs)
        _compat.check_backend(self)

    # ------------------------------------------------------------------ generation
    def _rollout(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        inputs = self._pending_inputs
        if inputs is None or len(inputs) != len(prompts):
            raise RuntimeError("envkit: rollout called without the batch's dataset rows")
        return self._episodes(inputs, self)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        self._pending_inputs = inputs
        try:
            batch = super()._generate_and_score_completions(inputs)
        finally:
            self._pending_inputs = None
        take = getattr(self._episodes, "take_branch_rows", None)
        branches = take() if callable(take) else []
        if branches:
            batch = self._with_branch_rows(batch, branches)
        if self._is_mode != "off" and self.model.training:
            self._add_importance_weights(batch)
        return batch

    @torch.no_grad()
    def _with_branch_rows(self, batch: dict[str, Any], branches: list[Any]) -> dict[str, Any]:
        """Appends an agent episode's further branches as rows (``envkit.trainers.agents``),
        recomputing the per-token log-probabilities TRL computed for the other rows."""
        from envkit.trainers._compat import use_adapter
        from envkit.trainers.agents import append_branch_rows

        pad = self.processing_class.pad_token_id
        out = append_branch_rows(
            batch,
            branches,
            pad_token_id=pad if pad is not None else 0,
            gather=self.accelerator.gather,
        )
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        attn = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        keep = out["completion_ids"].size(1)
        size = self.args.per_device_train_batch_size
        if batch.get("old_per_token_logps") is not None:
            out["old_per_token_logps"], _, _ = self._get_per_token_logps_and_entropies(
                self.model, ids, attn, keep, size
            )
        if batch.get("ref_per_token_logps") is not None:
            unwrapped = self.accelerator.unwrap_model(self.model)
            with use_adapter(unwrapped, adapter_name=None):
                out["ref_per_token_logps"], _, _ = self._get_per_token_logps_and_entropies(
                    self.model, ids, attn, keep, size
                )
        return out

    @torch.no_grad()
    def _add_importance_weights(self, batch: dict[str, Any]) -> None:
        """Adds ``old_per_token_logps`` (the model now) and ``importance_sampling_ratio``."""
        from envkit.trainers.importance import importance_ratio

        behaviour = batch.get("sampling_per_token_logps")
        if behaviour is None:
            raise RuntimeError(
                "importance sampling needs the behaviour log-probabilities of the sampled tokens, "
                "but the policy returned none; use a policy that reports logprobs or set "
                'importance_sampling="off"'
            )
        old = batch.get("old_per_token_logps")
        if old is None:
            ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
            attn = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
            keep = batch["completion_ids"].size(1)
            size = self.args.per_device_train_batch_size
            old, _, _ = self._get_per_token_logps_and_entropies(self.model, ids, attn, keep, size)
        ratio, stats = importance_ratio(
            old, behaviour.to(old.dtype), loss_mask(batch), self._is_mode, self._is_cap
        )
        batch["old_per_token_logps"] = old
        batch["importance_sampling_ratio"] = ratio.to(old.dtype)
        local = torch.tensor(
            [
                stats["tokens"],
                stats["ratio_sum"],
                -stats["ratio_min"],
                stats["ratio_max"],
                stats["clipped"],
                stats["diff_sum"],
                stats["diff_tokens"],
            ],
            dtype=torch.float64,
            device=self.accelerator.device,
        )
        every = self.accelerator.gather(local.reshape(1, -1))
        n, total, neg_min, top, clipped, diff, diff_n = (
            every[:, 0].sum(),
            every[:, 1].sum(),
            every[:, 2].max(),
            every[:, 3].max(),
            every[:, 4].sum(),
            every[:, 5].sum(),
            every[:, 6].sum(),
        )
        if n > 0:
            self.record("is/ratio_mean", float(total / n))
            self.record("is/ratio_min", float(-neg_min))
            self.record("is/ratio_max", float(top))
            self.record("is/clipped_frac", float(clipped / n))
        if diff_n > 0:
            self.record("is/logp_diff_mean", float(diff / diff_n))

    def record(self, name: str, value: float) -> None:
        """Adds a metric to this step's log (averaged like TRL's own metrics)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        self._metrics["train"][name].append(float(value))

    # ------------------------------------------------------------------ batching
    def _prepare_inputs(self, generation_batch: Any) -> dict[str, Any]:
        if not self.model.training:
            return super()._prepare_inputs(generation_batch)
        spg = self.args.steps_per_generation
        if self._step % (spg * self.num_iterations) == 0 or self._buffered_inputs is None:
            self._buffered_inputs = None  # the previous step's tensors can go before sampling
            release_memory()
            batch = self._generate_and_score_completions(generation_batch)
            if self._kl_every and (self.state.global_step + 1) % self._kl_every == 0:
                self.record("kl_to_base", self._kl_to_base(batch))
            rows = int(batch["completion_ids"].shape[0])
            if self._drop_zero_signal and self.beta == 0.0:
                batch = keep_rows(batch, batch["advantages"] != 0)
                local = batch["num_items_in_batch"].to(self.accelerator.device)
                batch["num_items_in_batch"] = self.accelerator.gather(local.reshape(1)).sum()
            counts = torch.tensor(
                [batch["completion_ids"].shape[0], rows], device=self.accelerator.device
            )
            kept, total = self.accelerator.gather(counts.reshape(1, 2)).sum(0).tolist()
            self.record("episodes/trained_frac", kept / total if total else 0.0)
            self._buffered_inputs = split_rows(batch, spg)
        return self._buffered_inputs[self._step % spg]

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> torch.Tensor:
        if inputs["completion_ids"].shape[0] == 0:
            # Nothing to learn from in this micro-batch: a zero loss that still touches every
            # trainable parameter, so distributed gradient reduction sees all of them.
            params = [p for p in model.parameters() if p.requires_grad]
            return torch.stack([p.sum() for p in params]).sum() * 0.0
        if "importance_sampling_ratio" not in inputs or self.use_vllm:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # TRL multiplies the per-token loss by inputs["importance_sampling_ratio"] only on its
        # vLLM path (use_vllm and vllm_importance_sampling_correction); open that gate for this
        # loss only, so nothing else of the vLLM path runs (see _compat._LOSS_SOURCE).
        saved = self.use_vllm, self.vllm_importance_sampling_correction
        self.use_vllm, self.vllm_importance_sampling_correction = True, True
        try:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            self.use_vllm, self.vllm_importance_sampling_correction = saved

    # ------------------------------------------------------------------ diagnostics
    @torch.no_grad()
    def _kl_to_base(self, batch: dict[str, Any]) -> float:
        """Mean per-token KL(policy || base) on the sampled tokens (k3 estimator)."""
        from envkit.trainers._compat import use_adapter

        mask = loss_mask(batch)
        if mask.sum() == 0:
            return math.nan
        ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        attn = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        keep = batch["completion_ids"].size(1)
        size = self.args.per_device_train_batch_size
        logps, _, _ = self._get_per_token_logps_and_entropies(self.model, ids, attn, keep, size)
        unwrapped = self.accelerator.unwrap_model(self.model)
        with use_adapter(unwrapped, adapter_name=None):
            base, _, _ = self._get_per_token_logps_and_entropies(self.model, ids, attn, keep, size)
        delta = base - logps
        kl = torch.exp(delta) - delta - 1
        total = self.accelerator.gather(
            torch.stack([(kl * mask).sum(), mask.sum().float()]).reshape(1, 2)
        )
        total = total.sum(0)
        return float(total[0] / total[1].clamp(min=1.0))
