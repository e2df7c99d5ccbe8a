"""The real chat templates stored here, the family each renders, and test tokenizers for them.

Sources (llama.cpp keeps verbatim copies of the hub's templates, fetched by its
``scripts/get_chat_template.py``):

* ``ggml-org/llama.cpp`` fork ``ye-NX/llama.cpp`` @ 1eeb523c3e0c7ffbd59469f5463dcbdecba3535e,
  ``models/templates/``: Qwen2.5-7B-Instruct, Qwen3-0.6B, Llama-3.1-8B-Instruct,
  Llama-3.2-3B-Instruct, Mistral-Nemo-Instruct-2407, Mistral-Small-3.2-24B-Instruct-2506,
  DeepSeek-R1-Distill-Qwen-32B (DeepSeek-R1's template), DeepSeek-V3.1.
* Qwen3-Coder-30B-A3B-Instruct: ``acproject/seq2seq_llama.cpp`` @ 6626e786,
  ``models/templates/Qwen3-Coder.jinja`` (stored there with CRLF line ends; LF here).
* GLM-4.5: the template embedded in a GLM-4.5 GGUF, printed by llama.cpp's server log in
  ``ikawrakow/ik_llama.cpp`` discussion #753; ``convert_hf_to_gguf.py`` (Glm4MoeModel) rewrites
  one line of the user turn for llama.cpp's engine, and that rewrite is undone here, giving the
  hub's ``zai-org/GLM-4.5`` ``chat_template.jinja``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

_QWEN = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_QWEN_ADDED = (
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
_LLAMA = (
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
)
_MISTRAL = (
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[TOOL_CALLS]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[CALL_ID]",
    "[ARGS]",
    "[TOOL_CONTENT]",
)
_GLM = (
    "[gMASK]",
    "<sop>",
    "<|endoftext|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
)
_GLM_ADDED = (
    "<tool_call>",
    "</tool_call>",
    "<arg_key>",
    "</arg_key>",
    "<arg_value>",
    "</arg_value>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
_DEEPSEEK = (
    "<｜begin▁of▁sentence｜>",
    "<｜end▁of▁sentence｜>",
    "<｜User｜>",
    "<｜Assistant｜>",
    "<｜tool▁calls▁begin｜>",
    "<｜tool▁calls▁end｜>",
    "<｜tool▁call▁begin｜>",
    "<｜tool▁call▁end｜>",
    "<｜tool▁sep｜>",
    "<｜tool▁outputs▁begin｜>",
    "<｜tool▁outputs▁end｜>",
    "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>",
)


@dataclass(frozen=True)
class Family:
    """A stored template and what it should be detected as."""

    file: str
    format: str
    variant: str | None
    special: tuple[str, ...]
    added: tuple[str, ...]
    bos: str | None
    eos: str

    @property
    def template(self) -> str:
        return (HERE / self.file).read_text()


FAMILIES: list[Family] = [
    Family(
        "Qwen-Qwen2.5-7B-Instruct.jinja", "hermes", None, _QWEN, _QWEN_ADDED, None, "<|im_end|>"
    ),
    Family("Qwen-Qwen3-0.6B.jinja", "hermes", None, _QWEN, _QWEN_ADDED, None, "<|im_end|>"),
    Family(
        "Qwen-Qwen3-Coder-30B-A3B-Instruct.jinja",
        "qwen3_coder",
        None,
        _QWEN,
        _QWEN_ADDED,
        None,
        "<|im_end|>",
    ),
    Family(
        "meta-llama-Llama-3.1-8B-Instruct.jinja",
        "llama3",
        None,
        _LLAMA,
        (),
        "<|begin_of_text|>",
        "<|eot_id|>",
    ),
    Family(
        "meta-llama-Llama-3.2-3B-Instruct.jinja",
        "llama3",
        None,
        _LLAMA,
        (),
        "<|begin_of_text|>",
        "<|eot_id|>",
    ),
    Family(
        "mistralai-Mistral-Nemo-Instruct-2407.jinja", "mistral", "list", _MISTRAL, (), "<s>", "</s>"
    ),
    Family(
        "mistralai-Mistral-Small-3.2-24B-Instruct-2506.jinja",
        "mistral",
        "call_id",
        _MISTRAL,
        (),
        "<s>",
        "</s>",
    ),
    Family("zai-org-GLM-4.5.jinja", "glm", None, _GLM, _GLM_ADDED, None, "<|endoftext|>"),
    Family(
        "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
        "deepseek",
        "r1",
        _DEEPSEEK,
        ("<think>", "</think>"),
        "<｜begin▁of▁sentence｜>",
        "<｜end▁of▁sentence｜>",
    ),
    Family(
        "deepseek-ai-DeepSeek-V3.1.jinja",
        "deepseek",
        "v3.1",
        _DEEPSEEK,
        ("<think>", "</think>"),
        "<｜begin▁of▁sentence｜>",
        "<｜end▁of▁sentence｜>",
    ),
]


def family_tokenizer(family: Family) -> Any:
    """A byte-level tokenizer (one token per byte, any text round-trips) with the family's
    special tokens whole and its real chat template (built like envkit's tiny-random one)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in family.special]
    )
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in family.added])
    kwargs: dict[str, Any] = {"bos_token": family.bos} if family.bos else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=family.eos,
        pad_token=family.eos,
        chat_template=family.template,
        model_max_length=8192,
        **kwargs,
    )
