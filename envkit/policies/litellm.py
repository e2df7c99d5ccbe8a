"""``LiteLLMPolicy``: any model litellm can call (OpenAI, Anthropic, vLLM, Ollama, ...).

Each request is one ``litellm.acompletion`` call; up to ``concurrency`` run at once. Local
OpenAI-compatible servers (vLLM, SGLang, llama.cpp, Ollama) work through ``api_base`` with a
model string such as ``"openai/<served-model-name>"``. Errors raise (after litellm's own
``num_retries``); a rollout records them as ``outcome="policy_error"``. That includes an HTTP
200 whose body holds no usable turn (no ``choices``, or ``content: null`` without tool calls):
``ModelResponseError``, never an empty answer the env would score as a silent 0. A reply cut at
the token limit is still a turn (the env judges it); its ``finish_reason="length"`` is kept on the
``Completion``, and cut tool-call arguments are kept as text (the env reports invalid JSON).

API policies have no token ids: ``Completion.prompt_token_ids``, ``token_ids`` and ``logprobs``
stay ``None``; ``usage`` is filled when the server reports it.

Example:
    >>> from envkit.policies import LiteLLMPolicy
    >>> policy = LiteLLMPolicy("openai/my-model", api_base="http://127.0.0.1:8000/v1",
    ...                        api_key="none", temperature=0.7, max_tokens=512)
    >>> policy.model
    'openai/my-model'
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envkit.policies.base import BasePolicy
from envkit.policies.toolcall_parsing import new_call_id
from envkit.types import Completion, GenerationRequest, Message, ToolCall, Usage

__all__ = ["LiteLLMPolicy", "ModelResponseError"]


class ModelResponseError(RuntimeError):
    """The model server answered (HTTP 200) without a usable assistant turn."""


class LiteLLMPolicy(BasePolicy):
    """Calls a chat model through ``litellm.acompletion``.

    Args:
        model: A litellm model string (``"gpt-4o-mini"``, ``"anthropic/claude-3-5-haiku-latest"``,
            ``"openai/<name>"`` with ``api_base`` for OpenAI-compatible servers, ...).
        api_base: The server's base URL, e.g. ``"http://127.0.0.1:8000/v1"``.
        api_key: The API key (default: litellm reads the provider's environment variable).
        temperature: Sampling temperature (``None``: the server's default).
        max_tokens: Most tokens per answer (``None``: the server's default).
        concurrency: Most requests in flight at once from this policy.
        timeout: Seconds per request.
        num_retries: Retries of a failed request (litellm backs off between them).
        **completion_kwargs: Passed to every ``litellm.acompletion`` call (``top_p``, ``seed``,
            ``extra_body``, ``drop_params``...).
    """

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        concurrency: int = 64,
        timeout: float = 120.0,
        num_retries: int = 2,
        **completion_kwargs: Any,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError(
                f"model must be a litellm model string such as 'gpt-4o-mini', got {model!r}"
            )
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if num_retries < 0:
            raise ValueError(f"num_retries must be >= 0, got {num_retries}")
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.concurrency = concurrency
        self.timeout = timeout
        self.num_retries = num_retries
        self.completion_kwargs = completion_kwargs
        self._semaphores: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Semaphore
        ] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        base = f", api_base={self.api_base!r}" if self.api_base else ""
        return f"LiteLLMPolicy({self.model!r}{base})"

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """One ``litellm.acompletion`` per request, up to ``concurrency`` at once."""
        if len(requests) == 1:
            return [await self._one(requests[0])]
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    def _semaphore(self) -> asyncio.Semaphore:
        # A semaphore belongs to one event loop; ``generate`` runs each call on a fresh loop.
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores[loop] = asyncio.Semaphore(self.concurrency)
        return sem

    async def _one(self, request: GenerationRequest) -> Completion:
        litellm = _litellm()
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_dict() for m in request.messages],
            "timeout": self.timeout,
            "num_retries": self.num_retries,
            **self.completion_kwargs,
        }
        if request.tools:
            kwargs["tools"] = request.tools
            if _needs_mcp_bypass(litellm):
                kwargs["_skip_mcp_handler"] = True
        for key in ("api_base", "api_key", "temperature", "max_tokens"):
            value = getattr(self, key)
            if value is not None:
                kwargs[key] = value
        async with self._semaphore():
            response = await litellm.acompletion(**kwargs)
        return _to_completion(response, self.model)


def _litellm() -> Any:
    from envkit._litellm import import_litellm  # no price-map fetch on import

    return import_litellm()


@functools.cache
def _needs_mcp_bypass(litellm: Any) -> bool:
    """Whether calls with tools must skip litellm's MCP bridge.

    Some litellm releases import the optional ``mcp`` package for every ``completion`` that has
    tools (to look for MCP-type tools), failing with "No module named 'mcp'" when it is not
    installed. envkit sends only function tools, so it skips that bridge with litellm's own
    ``_skip_mcp_handler`` flag, where the installed litellm knows that flag.
    """
    if importlib.util.find_spec("mcp") is not None:
        return False
    main = Path(litellm.__file__).with_name("main.py")
    try:
        return "_skip_mcp_handler" in main.read_text(encoding="utf-8")
    except OSError:
        return False


def _to_completion(response: Any, model: str) -> Completion:
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise ModelResponseError(f"{model}: the response has no choices: {str(response)[:500]}")
    choice = choices[0]
    message = getattr(choice, "message", None)
    finish_reason = getattr(choice, "finish_reason", None)
    if message is None:
        raise ModelResponseError(f"{model}: the response's choice has no message: {choice}")
    calls = [
        ToolCall.create(
            tc.function.name or "",
            tc.function.arguments or "{}",
            id=tc.id or new_call_id(),
        )
        for tc in (getattr(message, "tool_calls", None) or [])
    ]
    content = getattr(message, "content", None)
    if content is None and not calls:
        raise ModelResponseError(
            f"{model}: the answer has neither text nor tool calls (content: null, "
            f"finish_reason={finish_reason!r})"
        )
    usage = getattr(response, "usage", None)
    return Completion(
        message=Message(role="assistant", content=content, tool_calls=calls or None),
        finish_reason=finish_reason,
        usage=Usage(
            prompt_tokens=usage.prompt_tokens or 0, completion_tokens=usage.completion_tokens or 0
        )
        if usage is not None
        else None,
    )
