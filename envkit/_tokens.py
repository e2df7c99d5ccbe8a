"""The token ids that end a model's turn: one definition for generation and for training.

``HFPolicy`` stops generating at these ids and the GRPO trainer's ``render_trajectory`` reads
them as the end of each assistant turn, so both must come from here: a turn ended by an id one
side does not know would be cut or masked differently from how it was generated.

Example:
    >>> from envkit.models import load_model
    >>> model, tok = load_model("tiny-random")
    >>> stop_token_ids(model, tok) == [tok.convert_tokens_to_ids("<|im_end|>")]
    True
"""

from __future__ import annotations

from typing import Any

__all__ = ["stop_token_ids"]


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The tokenizer's EOS, then ``<|im_end|>`` when the vocabulary has it, then the model's
    ``generation_config.eos_token_id`` (an id or a list), without repeats, in that order.

    Args:
        model: A transformers model (or anything with ``generation_config``; may lack it).
        tokenizer: Its tokenizer.

    Returns:
        The ids; empty when none is known (callers then ask for ``stop_token_ids``).
    """
    stops: list[int] = []

    def add(token_id: Any) -> None:
        if isinstance(token_id, int) and not isinstance(token_id, bool) and token_id not in stops:
            stops.append(token_id)

    add(getattr(tokenizer, "eos_token_id", None))
    add(tokenizer.get_vocab().get("<|im_end|>"))
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for token_id in eos if isinstance(eos, (list, tuple)) else [eos]:
        add(token_id)
    return stops
