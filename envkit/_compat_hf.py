"""transformers' version-dependent names that the inference layer uses, in one place.

``envkit.models`` (GGUF loading) and ``envkit.policies.hf_continuous`` need them, and they sit
below the trainer in envkit's layers (docs/architecture.md), so they live here rather than in
``envkit.trainers._compat``, which re-exports them for the trainer and for older imports.

Example:
    >>> from envkit._compat_hf import continuous_batching_available
    >>> isinstance(continuous_batching_available(), bool)
    True
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["continuous_batching_available", "remove_quantization"]


def remove_quantization(model: Any, *, only: str | None = None) -> None:
    """Drops transformers' quantization config of a model whose weights are floats already.

    Used for GGUF checkpoints, which transformers de-quantizes on load but still marks as
    quantized (peft and trainers would then refuse or try to prepare it for k-bit training).

    Args:
        model: A transformers model.
        only: Remove only when the quantizer's ``quant_method`` is this (e.g. ``"gguf"``).
    """
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if only is not None and getattr(method, "value", method) != only:
        return
    if hasattr(quantizer, "remove_quantization_config"):
        quantizer.remove_quantization_config(model)
    else:  # older transformers: the attributes remove_quantization_config clears
        for attr in ("hf_quantizer", "is_quantized", "quantization_method"):
            if hasattr(model, attr):
                with_default = None if attr == "hf_quantizer" else False
                setattr(model, attr, with_default)
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config


def continuous_batching_available() -> bool:
    """Whether the installed transformers has continuous batching that returns log-probabilities.

    (``init_continuous_batching`` and ``ContinuousBatchingConfig(return_logprobs=...)``;
    transformers 5.17 and 5.24 have them, 4.56 has neither.)
    """
    try:
        from transformers import GenerationMixin
        from transformers.generation import ContinuousBatchingConfig
    except ImportError:
        return False
    fields = {f.name for f in dataclasses.fields(ContinuousBatchingConfig)}
    return hasattr(GenerationMixin, "init_continuous_batching") and "return_logprobs" in fields
