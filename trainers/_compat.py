"""Every use of TRL's and transformers' internals and version-dependent names, in one place.

envkit's trainer subclasses ``trl.GRPOTrainer`` and overrides or reads a few private members
(``_generate_and_score_completions``, ``_prepare_inputs``, ``_metrics``, ...), and some names
changed between releases (transformers 5.18 renamed ``gradient_checkpointing`` to
``activation_checkpointing``; 5.17 knows only the old name). Nothing else in envkit touches them:
``check()`` verifies all of them once, when a trainer is built, and fails with an error that
names what is missing, the installed versions and the versions envkit is tested with.

Example:
    >>> from envkit.trainers import _compat
    >>> _compat.check()  # raises IncompatibleVersionError on an untested TRL/transformers
    >>> sorted(_compat.checkpointing_args(True).values())
    [True]
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from typing import Any

# The inference layer's compat helpers live below the trainer; re-exported for older imports.
from envkit._compat_hf import continuous_batching_available, remove_quantization

__all__ = [
    "TESTED",
    "IncompatibleVersionError",
    "check",
    "check_backend",
    "checkpointing_args",
    "checkpointing_kwargs",
    "continuous_batching_available",
    "installed_versions",
    "remove_quantization",
    "unwrap_for_generation",
    "use_adapter",
    "vllm_engine",
]

TESTED: dict[str, str] = {
    "torch": "2.13.0 (CPU: floors job and CI), 2.11 (CUDA: benchmarks/gpu_check.py)",
    "transformers": "4.56.2 (floor), 5.17.0, 5.24.0",
    "trl": "1.16.0",
    "peft": "0.17.0 (floor), 0.21.2",
    "accelerate": "1.10.1 (floor), 1.15.0",
}
"""The versions of the training stack ``make test`` runs the trainer tests on."""

# Private or internal members of trl.GRPOTrainer that envkit.trainers.backend overrides or calls.
_TRAINER_METHODS = (
    "_generate_and_score_completions",  # overridden: hands the batch's dataset rows to rollouts
    "_prepare_inputs",  # overridden: drops zero-advantage rows, splits micro-batches
    "_get_per_token_logps_and_entropies",  # called: KL-to-base, importance sampling
    "_compute_loss",  # read (source): multiplies by importance_sampling_ratio behind a gate
    "compute_loss",  # overridden: empty micro-batches
)
# Attributes trl.GRPOTrainer sets in __init__ that the backend reads or writes.
_TRAINER_ATTRS = (
    "_metrics",
    "_step",
    "_buffered_inputs",
    "num_iterations",
    "beta",
    "use_vllm",  # with vllm_importance_sampling_correction: the gate opened around the loss
    "vllm_importance_sampling_correction",
)
# What trl.GRPOTrainer._compute_loss must contain for envkit's importance sampling: the gate
# (use_vllm and vllm_importance_sampling_correction) and the multiplication by the batch's ratio.
_LOSS_SOURCE = (
    "self.use_vllm and self.vllm_importance_sampling_correction",
    'inputs["importance_sampling_ratio"]',
)
# trl.GRPOTrainer.__init__ arguments envkit passes.
_TRAINER_ARGS = ("rollout_func", "reward_funcs", "peft_config", "processing_class")
# trl.GRPOConfig fields envkit sets (besides transformers.TrainingArguments' stable ones).
_CONFIG_FIELDS = (
    "num_generations",
    "max_completion_length",
    "beta",
    "epsilon",
    "epsilon_high",
    "loss_type",
    "scale_rewards",
    "mask_truncated_completions",
    "use_vllm",
    "vllm_mode",
    "vllm_importance_sampling_correction",
    "shuffle_dataset",
    "steps_per_generation",
)
# Importable helpers: (module, name).
_HELPERS = (
    ("trl.models", "unwrap_model_for_generation"),
    ("trl.trainer.utils", "use_adapter"),
    ("transformers.trainer_callback", "PrinterCallback"),
    ("transformers.trainer_callback", "ProgressCallback"),
)


class IncompatibleVersionError(RuntimeError):
    """The installed TRL/transformers lack something envkit's trainer relies on."""


def installed_versions() -> dict[str, str]:
    """``{package: version}`` of the training stack (``"missing"`` when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in TESTED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def _error(missing: list[str]) -> IncompatibleVersionError:
    installed = ", ".join(f"{k} {v}" for k, v in installed_versions().items())
    tested = "; ".join(f"{k} {v}" for k, v in TESTED.items())
    return IncompatibleVersionError(
        "envkit's trainer cannot run on the installed TRL/transformers: missing "
        + ", ".join(missing)
        + f". Installed: {installed}. Tested: {tested}. Install a tested version, e.g. "
        "pip install 'trl==1.16.0' 'transformers==5.17.0'"
    )


def _defined_by_trl(method: str) -> bool:
    """Whether TRL's GRPOTrainer (or a TRL base class) defines ``method``: one that only
    ``transformers.Trainer`` defines does not count, since envkit relies on TRL's version."""
    import trl
    from transformers import Trainer

    for cls in trl.GRPOTrainer.__mro__:
        if cls is Trainer:
            return False
        if method in vars(cls):
            return True
    return False


def _config_fields() -> set[str]:
    import trl

    return {f.name for f in dataclasses.fields(trl.GRPOConfig)}


@functools.cache
def check() -> None:
    """Verifies every TRL/transformers internal envkit uses, once per process.

    Raises:
        IncompatibleVersionError: something is missing; the message names it, the installed
            versions and the tested ones.
    """
    import trl

    missing = [f"trl.GRPOTrainer.{m}" for m in _TRAINER_METHODS if not _defined_by_trl(m)]
    params = inspect.signature(trl.GRPOTrainer.__init__).parameters
    missing += [f"trl.GRPOTrainer({a}=...)" for a in _TRAINER_ARGS if a not in params]
    fields = _config_fields()
    missing += [f"trl.GRPOConfig.{f}" for f in _CONFIG_FIELDS if f not in fields]
    if not fields & {"activation_checkpointing", "gradient_checkpointing"}:
        missing.append("trl.GRPOConfig.activation_checkpointing (or gradient_checkpointing)")
    try:
        loss_source = inspect.getsource(trl.GRPOTrainer._compute_loss)
    except (AttributeError, OSError, TypeError):
        loss_source = ""
    missing += [
        f"trl.GRPOTrainer._compute_loss using {text!r}"
        for text in _LOSS_SOURCE
        if text not in loss_source
    ]
    for module, name in _HELPERS:
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            missing.append(f"{module}.{name}")
    if missing:
        raise _error(missing)


def check_backend(trainer: Any) -> None:
    """Verifies the attributes ``trl.GRPOTrainer.__init__`` set that the backend uses.

    Raises:
        IncompatibleVersionError: one is missing.
    """
    missing = [f"trl.GRPOTrainer.{a}" for a in _TRAINER_ATTRS if not hasattr(trainer, a)]
    if missing:
        raise _error(missing)


def checkpointing_args(enabled: bool) -> dict[str, bool]:
    """The ``GRPOConfig`` keyword that turns activation (gradient) checkpointing on or off.

    transformers >= 5.18 calls it ``activation_checkpointing`` (the old name warns);
    earlier releases know only ``gradient_checkpointing``.
    """
    name = (
        "activation_checkpointing"
        if "activation_checkpointing" in _config_fields()
        else "gradient_checkpointing"
    )
    return {name: enabled}


def checkpointing_kwargs(args: Any) -> dict[str, Any] | None:
    """The checkpointing kwargs of a ``GRPOConfig`` under either name."""
    for name in ("activation_checkpointing_kwargs", "gradient_checkpointing_kwargs"):
        if hasattr(args, name):
            return getattr(args, name)
    return None


def unwrap_for_generation(trainer: Any) -> Any:
    """TRL's context manager that yields the trainer's model ready for ``generate``."""
    from trl.models import unwrap_model_for_generation

    return unwrap_model_for_generation(
        trainer.model_wrapped,
        trainer.accelerator,
        gradient_checkpointing_kwargs=checkpointing_kwargs(trainer.args),
    )


def use_adapter(model: Any, adapter_name: str | None) -> Any:
    """TRL's context manager that runs a peft model with one adapter (``None``: the base)."""
    from trl.trainer.utils import use_adapter as trl_use_adapter

    return trl_use_adapter(model, adapter_name=adapter_name)


def vllm_engine(trainer: Any) -> Any:
    """The ``vllm.LLM`` of TRL's colocated vLLM generation (``use_vllm=True``).

    Raises:
        IncompatibleVersionError: TRL keeps it somewhere else.
    """
    llm = getattr(getattr(trainer, "vllm_generation", None), "llm", None)
    if llm is None:
        raise _error(["trl.GRPOTrainer.vllm_generation.llm (colocated vLLM engine)"])
    return llm
