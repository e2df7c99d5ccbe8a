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
        ({"device": "cuda:3"}, "no CUDA device"),
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


# ---------------------------------------------------------------------- envkit.devices


def test_device_strings_resolve_on_this_machine() -> None:
    from envkit.devices import resolve_device, resolve_dtype

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("CPU") == "cpu"
    expected_auto = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected_auto
    assert resolve_device(None) == expected_auto
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    assert resolve_dtype(torch.float16, "cpu") == torch.float16


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "cuda0", "tpu", ""])
def test_malformed_device_strings_are_rejected_with_the_accepted_forms(bad: str) -> None:
    from envkit.devices import resolve_device

    with pytest.raises(ValueError, match="use 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        resolve_device(bad) if bad else resolve_device(" ")


def test_a_missing_cuda_device_says_what_was_asked_what_exists_and_how_to_fix() -> None:
    from envkit.devices import resolve_device

    with pytest.raises(RuntimeError) as info:
        resolve_device("cuda:7")
    message = str(info.value)
    assert "device='cuda:7' was asked for" in message
    if torch.cuda.is_available():
        assert "torch sees" in message and "cuda:0" in message
    else:
        assert "no CUDA device" in message and torch.__version__ in message
        assert "device='cpu'" in message


def test_unknown_dtype_is_rejected() -> None:
    from envkit.devices import resolve_dtype

    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8", "cpu")


def test_config_accepts_cuda_n_and_rejects_other_strings() -> None:
    assert GRPOConfig(device="cuda:1").device == "cuda:1"
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        GRPOConfig(device="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a CPU-only machine gives")
def test_trainer_with_a_missing_cuda_device_fails_before_training(tmp_path) -> None:
    with pytest.raises(RuntimeError, match="cuda:7"):
        load_base_model("tiny-random", GRPOConfig(device="cuda:7", output_dir=str(tmp_path)))


def test_the_run_records_device_and_dtype(tmp_path) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from train_support import make_trainer

    with make_trainer(tmp_path / "run", device="cpu", max_steps=1) as trainer:
        assert trainer.runtime == {"device": "cpu", "dtype": "float32"}
        assert trainer._run_info()["device"] == "cpu"
        assert trainer._run_info()["dtype"] == "float32"


@pytest.mark.gpu
def test_auto_picks_the_gpu_with_bf16() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    cfg = GRPOConfig()
    device = resolve_device(cfg)
    assert device == "cuda:0"
    model, _ = load_base_model("tiny-random", cfg)
    param = next(model.parameters())
    assert param.device.type == "cuda"
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert param.dtype == expected
