"""Dropping zero-signal rows, trimming padding and splitting micro-batches of TRL's batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from envkit.trainers.batch import keep_rows, loss_mask, split_rows


def _batch() -> dict:
    # 4 episodes; prompts left-padded to 4, completions right-padded to 5; row 3 has env tokens.
    return {
        "prompt_ids": torch.tensor([[0, 0, 1, 2], [0, 3, 4, 5], [7, 7, 7, 6], [0, 8, 9, 10]]),
        "prompt_mask": torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]]),
        "completion_ids": torch.tensor(
            [[11, 12, 0, 0, 0], [13, 0, 0, 0, 0], [14, 15, 16, 17, 18], [19, 20, 21, 0, 0]]
        ),
        "completion_mask": torch.tensor(
            [[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
        ),
        "tool_mask": torch.tensor(
            [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 0, 1, 1, 1]]
        ),
        "advantages": torch.tensor([0.0, 1.5, 0.0, -0.5]),
        "num_items_in_batch": torch.tensor(11),
    }


def test_keep_rows_drops_and_trims() -> None:
    batch = _batch()
    out = keep_rows(batch, batch["advantages"] != 0)
    assert out["advantages"].tolist() == [1.5, -0.5]
    # Row 0's and 2's padding columns are gone: prompts need 3 columns, completions 3.
    assert out["prompt_ids"].tolist() == [[3, 4, 5], [8, 9, 10]]
    assert out["prompt_mask"].tolist() == [[1, 1, 1], [1, 1, 1]]
    assert out["completion_ids"].tolist() == [[13, 0, 0], [19, 20, 21]]
    assert out["tool_mask"].tolist() == [[1, 1, 1], [1, 0, 1]]
    # Loss tokens: 1 + (3 - 1 env token).
    assert int(out["num_items_in_batch"]) == 3
    assert loss_mask(out).sum() == 3


def test_keep_no_rows_gives_an_empty_batch() -> None:
    out = keep_rows(_batch(), torch.zeros(4, dtype=torch.bool))
    assert out["completion_ids"].shape[0] == 0
    assert int(out["num_items_in_batch"]) == 0


def test_split_rows_uneven_keeps_the_step_normalizer() -> None:
    batch = keep_rows(_batch(), torch.tensor([True, True, False, True]))
    parts = split_rows(batch, 2)
    assert [p["completion_ids"].shape[0] for p in parts] == [2, 1]
    assert all(int(p["num_items_in_batch"]) == int(batch["num_items_in_batch"]) for p in parts)
    rows = torch.cat([p["advantages"] for p in parts]).tolist()
    assert rows == batch["advantages"].tolist()
    # Each micro-batch is trimmed on its own: the single-row part has no padding at all.
    assert parts[1]["completion_mask"].tolist() == [[1, 1, 1]]
    assert (
        split_rows(keep_rows(_batch(), torch.zeros(4, dtype=torch.bool)), 2)[0][
            "advantages"
        ].numel()
        == 0
    )


def test_auto_micro_batches_is_the_fewest_even_split_under_the_cap() -> None:
    from envkit.trainers.batch import auto_micro_batches

    assert [auto_micro_batches(n) for n in (1, 4, 6, 8, 16, 32)] == [1, 1, 2, 2, 4, 8]
    assert auto_micro_batches(7) == 7  # a prime above the cap: one row per pass
    assert auto_micro_batches(32, "cuda:0") == 2  # 16 rows per pass on CUDA
    assert auto_micro_batches(32, rows=32) == 1
    for bad in ({"episodes": 0}, {"episodes": 4, "rows": 0}):
        with pytest.raises(ValueError, match="must be >= 1"):
            auto_micro_batches(**bad)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, 2),  # unset, dapo: 8 episodes -> 2 passes of 4 (bounded activation memory)
        ({"loss_type": "cispo"}, 2),
        ({"loss_type": "grpo"}, 1),  # per-micro-batch normalizer: never split implicitly
        ({"micro_batches": 1}, 1),  # an explicit value is kept
        ({"micro_batches": 4}, 4),
    ],
)
def test_trainer_splits_a_step_into_micro_batches_unless_told_otherwise(
    tmp_path: Path, overrides: dict[str, Any], expected: int
) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from train_support import make_trainer

    with make_trainer(tmp_path / "run", **overrides) as trainer:
        assert trainer.config.micro_batches == expected
        args = trainer.backend.args
        assert args.gradient_accumulation_steps == expected
        assert args.per_device_train_batch_size * expected == 8
