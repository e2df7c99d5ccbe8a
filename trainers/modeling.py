"""Loading the base model for training: device, dtype, optional 4-bit, and the LoRA config.

CPU runs use float32; CUDA runs use bfloat16 (float16 where bf16 is unsupported); ``device`` is
``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` (``envkit.devices``).
``load_in_4bit`` quantizes the base with bitsandbytes (QLoRA) and needs CUDA, bitsandbytes and a
model given as a Hugging Face directory or hub id. A GGUF-loaded model has its quantization config
removed (its weights are already de-quantized to float), or peft and the trainer would treat it as
quantized.

Example:
    >>> from envkit.trainers import GRPOConfig
    >>> lora_config(GRPOConfig()).r
    16
"""

from __future__ import annotations

import importlib.util
from typing import Any

from envkit.trainers.config import GRPOConfig

__all__ = ["load_base_model", "lora_config", "make_policy", "resolve_device", "resolve_dtype"]


def resolve_device(config: GRPOConfig) -> str:
    """``"cpu"`` or ``"cuda:N"`` from ``config.device`` (see ``envkit.devices.resolve_device``).

    Raises:
        RuntimeError: a CUDA device was asked for that torch does not see.
    """
    from envkit.devices import resolve_device as resolve

    return resolve(config.device)


def resolve_dtype(config: GRPOConfig, device: str) -> Any:
    """The torch dtype of the base model: float32 on CPU, bfloat16 (or float16) on CUDA."""
    from envkit.devices import resolve_dtype as resolve

    return resolve(config.dtype, device)


def lora_config(config: GRPOConfig) -> Any:
    """The peft ``LoraConfig`` of a run (all linear layers, r=16, alpha=32 by default)."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


def _strip_gguf_quantizer(model: Any) -> None:
    from envkit.trainers._compat import remove_quantization

    remove_quantization(model, only="gguf")


def _load_4bit(spec: str, dtype: Any, device: str) -> tuple[Any, Any]:
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RuntimeError("load_in_4bit needs bitsandbytes: pip install bitsandbytes")
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_use_double_quant=True,
    )
    model = AutoModelForCausalLM.from_pretrained(
        spec, quantization_config=quant, dtype=dtype, device_map={"": device}
    )
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model, AutoTokenizer.from_pretrained(spec)


def load_base_model(spec: Any, config: GRPOConfig, tokenizer: Any = None) -> tuple[Any, Any]:
    """Loads (or adopts) the base model and tokenizer on the configured device and dtype.

    Args:
        spec: ``"smollm2-135m"``, ``"tiny-random"``, a local HF directory / hub id (see
            ``envkit.models.load_model``), a ``(model, tokenizer)`` pair, or a model instance
            (then ``tokenizer`` is required).
        config: The run's config (device, dtype, load_in_4bit).
        tokenizer: The tokenizer when ``spec`` is a model instance.

    Raises:
        TypeError: ``spec`` is a model without a tokenizer.
        RuntimeError: 4-bit loading was asked for without CUDA/bitsandbytes or for a bundled name.
    """
    device = resolve_device(config)
    dtype = resolve_dtype(config, device)
    if device.startswith("cuda"):
        import torch

        # accelerate (and so TRL) puts a single-process run on the current CUDA device.
        torch.cuda.set_device(device)
    if config.load_in_4bit:
        if not device.startswith("cuda"):
            raise RuntimeError("load_in_4bit needs CUDA; drop load_in_4bit on CPU")
        from envkit.model_spec import parse_model_spec

        parsed = parse_model_spec(spec, api=False) if isinstance(spec, str) else None
        if parsed is None or parsed.kind == "bundled":
            raise RuntimeError(
                "load_in_4bit needs --model as a Hugging Face model directory or hub id, "
                "not a bundled name or a loaded model"
            )
        model, tok = _load_4bit(parsed.name, dtype, device)
    else:
        if isinstance(spec, tuple):
            model, tok = spec
        elif isinstance(spec, str):
            from envkit.models import load_model

            model, tok = load_model(spec)
        else:
            if tokenizer is None:
                raise TypeError(
                    "pass the tokenizer with a model instance: GRPOTrainer((model, tokenizer), ...)"
                )
            model, tok = spec, tokenizer
        _strip_gguf_quantizer(model)
        model = model.to(device=device, dtype=dtype)
    if tokenizer is not None:
        tok = tokenizer
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if getattr(tok, "chat_template", None) is None:
        raise ValueError(
            "the tokenizer has no chat template; envkit renders conversations with it. Set "
            "tokenizer.chat_template or use an instruct model"
        )
    return model, tok


def make_policy(
    model: Any,
    tokenizer: Any,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    max_batch_size: int,
) -> Any:
    """The sampling policy of a run: ``envkit.policies.HFPolicy`` on the adapter-carrying model."""
    from envkit.policies import HFPolicy

    return HFPolicy(
        model,
        tokenizer,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        max_batch_size=max_batch_size,
    )
