"""Dropping zero-signal rows, trimming padding and splitting micro-batches of TRL's batch."""

from __future__ import annotations

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
