"""``remove_quantization(only="gguf")`` goes by the quantizer's declared method, not its name."""

from __future__ import annotations

from typing import Any

from envkit._compat_hf import remove_quantization


def _quantized(quantizer: Any) -> Any:
    from envkit.models import load_model

    model, _ = load_model("tiny-random")
    model.hf_quantizer = quantizer
    model.is_quantized = True
    model.config.quantization_config = quantizer.quantization_config
    return model


def test_a_gguf_quantizer_is_removed_whatever_its_class_is_called() -> None:
    from transformers.quantizers.quantizer_gguf import GgufHfQuantizer
    from transformers.utils.quantization_config import GgufConfig

    class Loader(GgufHfQuantizer):  # the old check looked for "gguf" in the class name
        pass

    for cls in (GgufHfQuantizer, Loader):
        model = _quantized(cls(GgufConfig()))
        remove_quantization(model, only="gguf")
        assert getattr(model, "hf_quantizer", None) is None, cls
        assert getattr(model.config, "quantization_config", None) is None


def test_another_method_is_left_alone() -> None:
    from transformers.quantizers.quantizer_bnb_4bit import Bnb4BitHfQuantizer
    from transformers.utils.quantization_config import BitsAndBytesConfig

    class GgufLookalike(Bnb4BitHfQuantizer):  # named like GGUF, but it is bitsandbytes
        pass

    quantizer = GgufLookalike(BitsAndBytesConfig(load_in_4bit=True))
    model = _quantized(quantizer)
    remove_quantization(model, only="gguf")
    assert model.hf_quantizer is quantizer
