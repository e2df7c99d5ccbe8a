"""One stop-token definition: the ids HFPolicy stops at are the ids the trainer renders with."""

from __future__ import annotations

from typing import Any

import pytest

from envkit._tokens import stop_token_ids
from envkit.models import load_model


@pytest.fixture
def qwen_base_style() -> tuple[Any, Any]:
    """tiny-random set up like a Qwen base model: EOS is <|endoftext|>, the chat turn ends at
    <|im_end|>, and generation_config names two ids (one of them the EOS again)."""
    model, tok = load_model("tiny-random")
    tok.eos_token = "<|endoftext|>"
    end = tok.convert_tokens_to_ids("<|endoftext|>")
    model.generation_config.eos_token_id = [end, 7]
    return model, tok


def test_the_rule_and_its_order(qwen_base_style: tuple[Any, Any]) -> None:
    model, tok = qwen_base_style
    end, im_end = tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    assert stop_token_ids(model, tok) == [end, im_end, 7]
    model.generation_config.eos_token_id = None
    assert stop_token_ids(model, tok) == [end, im_end]
    assert stop_token_ids(object(), tok) == [end, im_end]  # no generation_config at all


@pytest.mark.slow  # builds a GRPOTrainer (about 15 s on CPU)
def test_policy_and_trainer_agree(qwen_base_style: tuple[Any, Any], tmp_path: Any) -> None:
    from envkit.policies.hf import HFPolicy
    from envkit.trainers import GRPOConfig, GRPOTrainer

    model, tok = qwen_base_style
    cfg = GRPOConfig(
        max_steps=1, group_size=2, groups_per_step=1, progress=False, output_dir=str(tmp_path)
    )
    with GRPOTrainer(model, "Arithmetic-v0", config=cfg, tokenizer=tok) as trainer:
        rendered_with = trainer.episodes.stop_token_ids
        generated_with = trainer._make_policy(trainer.model).stop_token_ids
    assert rendered_with == generated_with == stop_token_ids(model, tok)
    assert HFPolicy(model, tok).stop_token_ids == stop_token_ids(model, tok)
