"""`envkit eval --adapter`: base and adapters side by side on one loaded model."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from envkit.cli.main import app
from envkit.types import TrajectoryGroup, read_jsonl


def _save_adapter(path: Path, seed: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from envkit.models import load_model

    model, _ = load_model("tiny-random")
    torch.manual_seed(seed)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    )
    peft_model.save_pretrained(path)


def test_eval_compares_base_and_two_adapters(tmp_path: Path) -> None:
    a, b = tmp_path / "run-a", tmp_path / "run-b"
    _save_adapter(a, 1)
    _save_adapter(b, 2)
    out = tmp_path / "eval.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "eval", "Arithmetic-v0", "--model", "tiny-random",
            "--adapter", str(a), "--adapter", str(b),
            "-n", "2", "-g", "2", "--max-tokens", "4", "--out", str(out),
            "-k", "max_turns=1",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ("base", "run-a", "run-b"):
        assert name in result.output
    groups = read_jsonl(out, TrajectoryGroup)
    assert len(groups) == 3 * 2  # three policies x two tasks
    assert all(len(g) == 2 and all(t.outcome == "ok" for t in g) for g in groups)


def test_eval_adapter_needs_a_local_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["eval", "Arithmetic-v0", "--model", "openai/x", "--adapter", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "local base model" in result.output
