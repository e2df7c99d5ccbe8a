"""Device and dtype choices; the CUDA-only paths (4-bit, vLLM) fail clearly on CPU."""

from __future__ import annotations

import pytest
import torch
from envkit.trainers import GRPOConfig
from envkit.trainers.modeling import load_base_model, lora_config, resolve_device, resolve_dtype


def test_cpu_defaults_to_float32() -> None:
    cfg = GRPOConfig(device="cpu")
    assert resolve_device(cfg) == "cpu"
    assert resolve_dtype(cfg, "cpu") == torch.float32
    assert resolve_dtype(GRPOConfig(dtype="bfloat16"), "cpu") == torch.bfloat16
    model, tok = load_base_model("tiny-random", cfg)
    assert next(model.parameters()).dtype == torch.float32
    assert tok.padding_side == "left" and tok.pad_token is not None


def test_lora_config_follows_the_config() -> None:
    lc = lora_config(GRPOConfig(lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"]))
    assert (lc.r, lc.lora_alpha, lc.lora_dropout) == (4, 8, 0.0)
    assert set(lc.target_modules) == {"q_proj", "v_proj"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a CPU-only machine gives")
@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"device": "cuda"}, "no CUDA device"),
        ({"load_in_4bit": True}, "load_in_4bit needs CUDA"),
    ],
)
def test_cuda_only_options_fail_clearly_on_cpu(overrides: dict, needle: str) -> None:
    with pytest.raises(RuntimeError, match=needle):
        load_base_model("tiny-random", GRPOConfig(**overrides))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a CPU-only machine gives")
def test_use_vllm_without_gpu_fails_at_construction(tmp_path) -> None:
    from envkit.trainers import GRPOTrainer

    with pytest.raises(RuntimeError, match="use_vllm needs a CUDA GPU and the vllm package"):
        GRPOTrainer(
            "tiny-random",
            "Arithmetic-v0",
            config=GRPOConfig(use_vllm=True, output_dir=str(tmp_path)),
        )


def test_model_instance_needs_its_tokenizer() -> None:
    from envkit.models import load_model

    model, _ = load_model("tiny-random")
    with pytest.raises(TypeError, match="pass the tokenizer"):
        load_base_model(model, GRPOConfig(device="cpu"))


def test_config_must_fit_the_processes(tmp_path, monkeypatch) -> None:
    from envkit.trainers import GRPOTrainer

    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = GRPOConfig(groups_per_step=3, output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="multiple of the 2 processes"):
        GRPOTrainer("tiny-random", "Arithmetic-v0", config=cfg)


def test_unknown_env_fails_before_loading_anything(tmp_path) -> None:
    import gymnasium as gym
    from envkit.trainers import GRPOTrainer

    with pytest.raises(gym.error.Error, match="Arithmetic"):
        GRPOTrainer("tiny-random", "Arithmetc-v0", config=GRPOConfig(output_dir=str(tmp_path)))
