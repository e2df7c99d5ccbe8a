"""A random (non-zero) LoRA adapter of the tiny random model, saved for tests that load adapters."""

from __future__ import annotations

from pathlib import Path


def save_random_adapter(path: Path, seed: int) -> Path:
    """Saves an r=8 all-linear LoRA adapter of ``tiny-random`` with random weights to ``path``."""
    import torch
    from peft import LoraConfig, get_peft_model

    from envkit.models import load_model

    base, _ = load_model("tiny-random")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(
            base,
            LoraConfig(r=8, lora_alpha=64, target_modules="all-linear", init_lora_weights=False),
        )
    peft_model.save_pretrained(str(path))
    return path
