"""The request and response bodies of ``envkit serve``: those of vLLM's OpenAI server.

The names and shapes follow vLLM's documented server (``/v1/completions``,
``/v1/chat/completions`` with its extra parameters ``top_k``, ``stop_token_ids``,
``return_tokens_as_token_ids`` and ``return_token_ids``; ``/v1/load_lora_adapter``;
https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html and
https://docs.vllm.ai/en/latest/features/lora.html), so a client written against one works with
the other. Unknown fields are ignored, as vLLM does. A JSON ``null`` means "unset" (vLLM's
default), as in vLLM. vLLM's sampling fields that ``envkit serve`` does not implement
(``repetition_penalty``, ``min_p``, ``logit_bias``, ``response_format``... see ``NEUTRAL``) are
declared here so that the server can accept their neutral values and refuse any other with HTTP
400, like the features it lacks (``n > 1``, streaming, stop strings, top-k alternatives in
``logprobs``), rather than silently answer differently.

Example:
    >>> CompletionRequest.model_validate({"model": "m", "prompt": [1, 2], "logprobs": 0}).prompt
    [1, 2]
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "NEUTRAL",
    "ChatCompletionRequest",
    "CompletionRequest",
    "ErrorBody",
    "LoadLoRAAdapterRequest",
    "UnloadLoRAAdapterRequest",
    "error_body",
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


NEUTRAL: dict[str, tuple[tuple[Any, ...], str]] = {
    "repetition_penalty": ((1, 1.0), "1.0"),
    "presence_penalty": ((0, 0.0), "0"),
    "frequency_penalty": ((0, 0.0), "0"),
    "min_p": ((0, 0.0), "0"),
    "logit_bias": (({},), "{}"),
    "min_tokens": ((0,), "0"),
    "ignore_eos": ((False,), "false"),
    "prompt_logprobs": ((), "null"),
    "response_format": (({"type": "text"},), '{"type": "text"}'),
    "use_beam_search": ((False,), "false"),
    "allowed_token_ids": ((), "null"),
    "bad_words": (([],), "[]"),
    "structured_outputs": ((), "null"),
    "guided_json": ((), "null"),
    "guided_regex": ((), "null"),
    "guided_choice": ((), "null"),
    "guided_grammar": ((), "null"),
    "logprob_token_ids": ((), "null"),
    "truncate_prompt_tokens": ((), "null"),
}
"""vLLM's fields that ``envkit serve`` does not implement: the values it accepts (besides
``null``, always "unset") and how to write them. Any other value is refused with HTTP 400."""


class _Sampling(_Request):
    """The sampling parameters both endpoints share (vLLM's names; ``top_k`` -1 or 0: off).

    Every field is optional and ``null`` means unset, as in vLLM.
    """

    model: str | None = None
    """The served model name or a loaded LoRA adapter's ``lora_name`` (None: the base model)."""
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    n: int | None = None
    stream: bool | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    return_tokens_as_token_ids: bool | None = None
    """Token strings in ``logprobs`` become ``"token_id:<id>"`` (vLLM's extension)."""
    return_token_ids: bool | None = None
    """Adds ``prompt_token_ids`` and ``token_ids`` to the answer (vLLM >= 0.10.2)."""
    skip_special_tokens: bool | None = None
    """Leave special tokens out of the answer's text (``null``: true, vLLM's default)."""
    include_stop_str_in_output: bool | None = None
    """Keep the stop token's text at the end of a completion's ``text`` (``null``: false)."""
    # Not implemented: only their neutral values are accepted (``NEUTRAL``).
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    min_p: float | None = None
    logit_bias: dict[str, float] | None = None
    min_tokens: int | None = None
    ignore_eos: bool | None = None
    prompt_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    use_beam_search: bool | None = None
    allowed_token_ids: list[int] | None = None
    bad_words: list[str] | None = None
    structured_outputs: dict[str, Any] | None = None
    guided_json: Any = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None
    logprob_token_ids: list[int] | None = None
    truncate_prompt_tokens: int | None = None

    def unsupported(self) -> list[str]:
        """One line per field set to a value ``envkit serve`` does not implement (``NEUTRAL``).

        Example:
            >>> CompletionRequest(prompt=[1], repetition_penalty=1.0, min_p=None).unsupported()
            []
            >>> CompletionRequest(prompt=[1], repetition_penalty=1.1).unsupported()
            ['repetition_penalty=1.1 (envkit serve supports 1.0 only)']
        """
        problems = []
        for name, (accepted, shown) in NEUTRAL.items():
            value = getattr(self, name)
            if value is not None and value not in accepted:
                problems.append(f"{name}={value!r} (envkit serve supports {shown} only)")
        return problems


class CompletionRequest(_Sampling):
    """``POST /v1/completions``: a text prompt, or a prompt given as token ids."""

    prompt: str | list[int] | list[str] | list[list[int]]
    max_tokens: int | None = 16  # OpenAI's and vLLM's default for completions
    logprobs: int | None = None
    """``0``: the sampled tokens' log-probabilities only (``envkit serve`` returns no others)."""
    echo: bool | None = None


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class LoadLoRAAdapterRequest(_Request):
    """``POST /v1/load_lora_adapter``."""

    lora_name: str | None = None
    lora_path: str | None = None
    load_inplace: bool | None = None
    """Replace the weights of an adapter already loaded under ``lora_name`` (vLLM >= 0.11)."""


class UnloadLoRAAdapterRequest(_Request):
    """``POST /v1/unload_lora_adapter``."""

    lora_name: str | None = None
    lora_int_id: int | None = None


class ErrorBody(BaseModel):
    """The ``error`` object of an error answer (OpenAI's and vLLM's shape)."""

    message: str
    type: str
    param: str | None = None
    code: int


_ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 500: "InternalServerError"}


def error_body(status: int, message: str) -> dict[str, Any]:
    """``{"error": {...}}`` for an HTTP status, as vLLM answers errors.

    Example:
        >>> error_body(404, "no such adapter")["error"]["type"]
        'NotFoundError'
    """
    kind = _ERROR_TYPES.get(status, "BadRequestError" if status < 500 else "InternalServerError")
    return {"error": ErrorBody(message=message, type=kind, code=status).model_dump()}


def new_id(prefix: str) -> str:
    """A fresh response id such as ``cmpl-1f0c...`` (vLLM's prefixes: cmpl, chatcmpl)."""
    return f"{prefix}-{uuid.uuid4().hex}"


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionLogprobs(BaseModel):
    """The legacy completions API's ``logprobs`` object."""

    text_offset: list[int] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    tokens: list[str] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None
    stop_reason: int | str | None = None
    prompt_token_ids: list[int] | None = None
    token_ids: list[int] | None = None


class CompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: new_id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ChatTokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[dict[str, Any]] = Field(default_factory=list)


class ChatLogprobs(BaseModel):
    content: list[ChatTokenLogprob] | None = None


class ChatMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: Literal["stop", "length", "tool_calls"] | None
    stop_reason: int | str | None = None
    token_ids: list[int] | None = None


class ChatCompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: new_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage
    prompt_token_ids: list[int] | None = None
