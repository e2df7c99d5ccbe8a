"""The request and response bodies of ``envkit serve``: those of vLLM's OpenAI server.

The names and shapes follow vLLM's documented server (``/v1/completions``,
``/v1/chat/completions`` with its extra parameters ``top_k``, ``stop_token_ids``,
``return_tokens_as_token_ids`` and ``return_token_ids``; ``/v1/load_lora_adapter``;
https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html and
https://docs.vllm.ai/en/latest/features/lora.html), so a client written against one works with
the other. Unknown fields are ignored, as vLLM does; features ``envkit serve`` lacks (``n > 1``,
streaming, stop strings, top-k alternatives in ``logprobs``) are refused with HTTP 400 rather
than silently answered differently.

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
    "ChatCompletionRequest",
    "CompletionRequest",
    "ErrorBody",
    "LoadLoRAAdapterRequest",
    "UnloadLoRAAdapterRequest",
    "error_body",
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Sampling(_Request):
    """The sampling parameters both endpoints share (vLLM's names; ``top_k`` -1 or 0: off)."""

    model: str | None = None
    """The served model name or a loaded LoRA adapter's ``lora_name`` (None: the base model)."""
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    return_tokens_as_token_ids: bool | None = None
    """Token strings in ``logprobs`` become ``"token_id:<id>"`` (vLLM's extension)."""
    return_token_ids: bool | None = None
    """Adds ``prompt_token_ids`` and ``token_ids`` to the answer (vLLM >= 0.10.2)."""


class CompletionRequest(_Sampling):
    """``POST /v1/completions``: a text prompt, or a prompt given as token ids."""

    prompt: str | list[int] | list[str] | list[list[int]]
    max_tokens: int | None = 16  # OpenAI's and vLLM's default for completions
    logprobs: int | None = None
    """``0``: the sampled tokens' log-probabilities only (``envkit serve`` returns no others)."""
    echo: bool = False


class ChatCompletionRequest(_Sampling):
    """``POST /v1/chat/completions``."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None


class LoadLoRAAdapterRequest(_Request):
    """``POST /v1/load_lora_adapter``."""

    lora_name: str | None = None
    lora_path: str | None = None


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
