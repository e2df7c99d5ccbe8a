"""Several LoRA adapters of one base model evaluated side by side (peft multi-adapter)."""

from __future__ import annotations

from pathlib import Path

import pytest
from adapter_support import save_random_adapter
from rich.console import Console

from envkit.trainers.adapters import adapter_dir, adapter_name, evaluate_adapters, print_comparison

ENV_KWARGS = {"operators": "+", "max_turns": 1}
SEEDS = [0, 1, 2]


def _greedy_texts(model: object, tok: object) -> list[str]:
    import envkit
    from envkit.policies import HFPolicy

    policy = HFPolicy(model, tok, max_new_tokens=6, temperature=0)
    groups = envkit.collect(
        "Arithmetic-v0", policy, seeds=SEEDS, env_kwargs=ENV_KWARGS, progress=False
    )
    return [g[0].completions[0].message.content or "" for g in groups]


def test_adapters_side_by_side_match_single_loads(tmp_path: Path) -> None:
    from peft import PeftModel

    from envkit.models import load_model

    a = save_random_adapter(tmp_path / "run-a" / "adapter", 1)
    b = save_random_adapter(tmp_path / "b", 2)
    results = evaluate_adapters(
        "tiny-random",
        "Arithmetic-v0",
        [tmp_path / "run-a", b],
        seeds=SEEDS,
        env_kwargs=ENV_KWARGS,
        max_new_tokens=6,
        temperature=0,
        device="cpu",
    )
    assert list(results) == ["base", "run-a", "b"]
    texts = {
        name: [g[0].completions[0].message.content for g in groups]
        for name, groups in results.items()
    }
    assert all(len(groups) == len(SEEDS) for groups in results.values())
    # Each adapter behaves exactly like the same adapter loaded alone; the base like the base.
    base_model, tok = load_model("tiny-random")
    assert texts["base"] == _greedy_texts(base_model, tok)
    for name, path in (("run-a", a), ("b", b)):
        model, tok = load_model("tiny-random")
        assert texts[name] == _greedy_texts(PeftModel.from_pretrained(model, str(path)), tok)
    assert texts["run-a"] != texts["base"] and texts["b"] != texts["run-a"]

    console = Console(record=True, width=150)
    rows = print_comparison(results, console)
    table = console.export_text()
    assert [r["policy"] for r in rows] == ["base", "run-a", "b"]
    assert "vs base" in table and "pass@1" in table and "run-a" in table


def test_adapter_paths_and_errors(tmp_path: Path) -> None:
    (tmp_path / "r" / "adapter").mkdir(parents=True)
    (tmp_path / "r" / "adapter" / "adapter_config.json").write_text("{}")
    assert adapter_dir(tmp_path / "r") == tmp_path / "r" / "adapter"
    assert adapter_name(tmp_path / "r") == "r"
    assert adapter_name(tmp_path / "r" / "checkpoints" / "checkpoint-5") == "r/checkpoint-5"
    with pytest.raises(FileNotFoundError, match="neither a peft adapter folder"):
        adapter_dir(tmp_path / "nothing")
    with pytest.raises(ValueError, match="two adapters are named"):
        evaluate_adapters(
            "tiny-random", "Arithmetic-v0", [tmp_path / "r", tmp_path / "r"], seeds=[0]
        )
