"""The random-init Llama-architecture model the GPU benchmarks and ``gpu_check.py`` share.

``bench_train_gpu.py``, ``bench_engines.py --random-llama`` and ``gpu_check.py`` measure the same
~0.4B model (hidden 1024, 24 layers, grouped-query attention, tied embeddings) with a real
tokenizer; ``small=True`` is the same architecture at test size, for dry runs on the CPU.
"""

from __future__ import annotations

from typing import Any


def saved_tokenizer(path: str) -> Any:
    """A tokenizer folder (``shared/gpu/prepare.sh``'s ``.gpu/tok``), given envkit's ChatML
    tool template when it has no chat template."""
    from transformers import AutoTokenizer

    from envkit.models import chatml_tools_template

    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = tok.chat_template or chatml_tools_template()
    return tok


def random_llama(
    tok: Any, *, small: bool = False, pad_token_id: int | None = None, seed: int = 0
) -> Any:
    """A random-init ``LlamaForCausalLM`` for ``tok``, float32 on the CPU, weights from ``seed``.

    Args:
        tok: The tokenizer: sets the vocabulary size and the EOS token.
        small: Hidden 64 and 2 layers instead of the ~0.4B benchmark size.
        pad_token_id: The padding id of the config (default: the EOS id).
        seed: Seeds ``torch.manual_seed`` before the weights are drawn.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64 if small else 1024,
        intermediate_size=128 if small else 2816,
        num_hidden_layers=2 if small else 24,
        num_attention_heads=4 if small else 16,
        num_key_value_heads=2 if small else 4,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id if pad_token_id is None else pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    return model
