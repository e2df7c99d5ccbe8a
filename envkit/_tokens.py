"""The token ids that end a model's turn: one definition for generation and for training.

``HFPolicy`` stops generating at these ids and the GRPO trainer's ``render_trajectory`` reads
them as the end of each assistant turn, so both must come from here: a turn ended by an id one
side does not know would be cut or masked differently from how it was generated.
``envkit check-template`` checks a template with these same ids (``stop_token_ids_for``).

Example:
    >>> from envkit.models import load_model
    >>> model, tok = load_model("tiny-random")
    >>> stop_token_ids(model, tok) == [tok.convert_tokens_to_ids("<|im_end|>")]
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["stop_token_ids", "stop_token_ids_for"]


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The tokenizer's EOS, then ``<|im_end|>`` when the vocabulary has it, then the model's
    ``generation_config.eos_token_id`` (an id or a list), without repeats, in that order.

    Args:
        model: A transformers model (or anything with ``generation_config``; may lack it).
        tokenizer: Its tokenizer.

    Returns:
        The ids; empty when none is known (callers then ask for ``stop_token_ids``).
    """
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    return stop_token_ids_for(tokenizer, eos)


def stop_token_ids_for(tokenizer: Any, generation_eos: int | Sequence[int] | None) -> list[int]:
    """``stop_token_ids`` without loading the model: ``generation_eos`` is the
    ``eos_token_id`` of its ``generation_config.json`` (``None``: it has none).

    ``envkit check-template`` uses this on a model directory, so it checks with the very ids
    the trainer and ``HFPolicy`` will use.

    Example:
        >>> from envkit.models import load_model
        >>> tok = load_model("tiny-random")[1]
        >>> stop_token_ids_for(tok, [5, 5]) == [tok.convert_tokens_to_ids("<|im_end|>"), 5]
        True
    """
    stops: list[int] = []

    def add(token_id: Any) -> None:
        if isinstance(token_id, int) and not isinstance(token_id, bool) and token_id not in stops:
            stops.append(token_id)

    add(getattr(tokenizer, "eos_token_id", None))
    add(tokenizer.get_vocab().get("<|im_end|>"))
    eos = generation_eos
    for token_id in eos if isinstance(eos, (list, tuple)) else [eos]:
        add(token_id)
    return stops
