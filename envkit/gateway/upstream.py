"""What the gateway samples from: an ``Upstream``, usually a ``PolicyUpstream`` over a policy.

The gateway turns each HTTP call into one ``UpstreamRequest`` (the conversation, the tools, the
client's sampling fields) and awaits ``upstream.complete(request)``, which returns one
``Completion`` with the prompt's and the sampled token ids when the upstream knows them.

``PolicyUpstream(policy)`` wraps any envkit policy:

* an ``HFPolicy`` (in process): the conversation is rendered with ``policy.render`` and sampled
  with ``policy.agenerate_ids`` with a per-request ``SamplingParams``. Calls made concurrently
  on the gateway's event loop (many sessions at once) join the policy's batches.
* any other policy (``ServerPolicy``: ``envkit serve`` or vLLM, with token ids;
  ``LiteLLMPolicy``: a hosted API, without them; scripted policies): ``policy.agenerate``.

Sampling modes (``sampling=``):

* ``"policy"`` (the default, what training needs): the policy's own temperature, top-p and top-k
  apply whatever the client sends, so every call is sampled from the distribution being trained.
  A client ``max_tokens`` is honoured up to the policy's ``max_new_tokens`` (HFPolicy; other
  policies always sample with their own settings, ``max_new_tokens`` included). The client's
  ``seed`` is not used (the policy's ``seed`` is).
* ``"client"``: the client's ``temperature``, ``top_p``, ``max_tokens`` and ``seed`` (and vLLM's
  ``top_k``) apply, the policy's values filling in what the client leaves out, as a plain
  inference server does. Only an ``HFPolicy`` takes per-request sampling parameters; other
  policies refuse this mode.

Example:
    >>> from envkit.policies import ScriptedPolicy
    >>> from envkit.types import Message
    >>> upstream = PolicyUpstream(ScriptedPolicy(["hello"]))
    >>> upstream.reports_token_ids, upstream.sampling
    (False, 'policy')
    >>> from envkit._async import run_sync
    >>> request = UpstreamRequest(messages=[Message(role="user", content="hi")])
    >>> run_sync(upstream.complete(request)).message.content
    'hello'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from envkit.types import Completion, GenerationRequest, Message

__all__ = ["PolicyUpstream", "Sampling", "Upstream", "UpstreamRequest", "UpstreamRequestError"]

Sampling = Literal["policy", "client"]
"""Whose sampling settings apply: the policy's (``"policy"``) or the client's (``"client"``)."""


@dataclass(frozen=True)
class UpstreamRequest:
    """One call to sample: the conversation and what the client asked for.

    Attributes:
        messages: The conversation, as the client sent it (converted to ``Message``).
        tools: The function-tool schemas offered (chat-completions form), or ``None``.
        parse_tool_calls: Parse tool calls from the answer (``False`` for ``tool_choice="none"``).
        max_tokens: The client's ``max_tokens``/``max_completion_tokens`` (``None``: not sent).
        temperature: The client's ``temperature`` (used in ``"client"`` sampling mode).
        top_p: The client's ``top_p`` (used in ``"client"`` sampling mode).
        top_k: vLLM's ``top_k`` (``"client"`` mode; ``-1`` or ``0``: off).
        seed: The client's ``seed`` (used in ``"client"`` sampling mode).
    """

    messages: Sequence[Message]
    tools: list[dict[str, Any]] | None = None
    parse_tool_calls: bool = True
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None


class UpstreamRequestError(ValueError):
    """The upstream cannot sample this request as asked (the gateway answers 400, not 502).

    For example: the conversation does not fit the model's context, or the chat template refuses
    it. Any other exception from ``Upstream.complete`` is an upstream failure (502).
    """


@runtime_checkable
class Upstream(Protocol):
    """What the gateway samples from (see the module doc)."""

    @property
    def reports_token_ids(self) -> bool:
        """Whether completions carry prompt and sampled token ids with log-probabilities."""
        ...

    @property
    def sampling(self) -> Sampling:
        """Whose sampling settings apply (``"policy"`` or ``"client"``)."""
        ...

    @property
    def adapter(self) -> str | None:
        """The LoRA adapter the next call samples with (``None``: the base model)."""
        ...

    async def complete(self, request: UpstreamRequest) -> Completion:
        """Samples one assistant turn; raises ``UpstreamRequestError`` for a bad request."""
        ...

    def token_strings(self, token_ids: Sequence[int]) -> list[str]:
        """The text of each token (for ``logprobs.content``), one string per id."""
        ...


class PolicyUpstream:
    """An ``Upstream`` over an envkit policy (see the module doc).

    Args:
        policy: Any envkit policy: ``HFPolicy`` (per-request sampling, batched), ``ServerPolicy``,
            ``LiteLLMPolicy``, ``CallablePolicy``, ``ScriptedPolicy``...
        sampling: ``"policy"`` (default) or ``"client"`` (``HFPolicy`` only).
        adapter: Sample with this loaded LoRA adapter (``HFPolicy``); ``None``: the policy's own
            choice (``policy.use_adapter``). Settable between calls (``upstream.adapter = name``).
        reports_token_ids: Override the detection of whether the policy's completions carry
            token ids (``HFPolicy`` and ``ServerPolicy`` do; others are assumed not to).

    Raises:
        ValueError: an unknown ``sampling``, or ``"client"`` with a policy that samples only with
            its own settings.
    """

    def __init__(
        self,
        policy: Any,
        *,
        sampling: Sampling = "policy",
        adapter: str | None = None,
        reports_token_ids: bool | None = None,
    ) -> None:
        from envkit.policies.hf import HFPolicy
        from envkit.policies.server import ServerPolicy

        if sampling not in ("policy", "client"):
            raise ValueError(f"sampling must be 'policy' or 'client', got {sampling!r}")
        if not callable(getattr(policy, "agenerate", None)):
            raise TypeError(
                "PolicyUpstream needs an envkit policy (with agenerate), got "
                f"{type(policy).__name__}"
            )
        self._hf = isinstance(policy, HFPolicy)
        if sampling == "client" and not self._hf:
            raise ValueError(
                f"sampling='client' needs per-request sampling parameters, which only an "
                f"in-process HFPolicy takes; {type(policy).__name__} samples with its own "
                "settings. Use sampling='policy' (set the policy's temperature/max_new_tokens)"
            )
        self.policy = policy
        self._sampling: Sampling = sampling
        self._adapter = adapter
        if reports_token_ids is None:
            reports_token_ids = self._hf or isinstance(policy, ServerPolicy)
        self._reports_token_ids = reports_token_ids

    @property
    def reports_token_ids(self) -> bool:
        """Whether completions carry token ids and log-probabilities."""
        return self._reports_token_ids

    @property
    def sampling(self) -> Sampling:
        """``"policy"`` or ``"client"`` (see the module doc)."""
        return self._sampling

    @property
    def adapter(self) -> str | None:
        """The adapter calls sample with: the one set here, else the policy's active one."""
        if self._adapter is not None:
            return self._adapter
        if self._hf:
            return self.policy.adapter_in_use
        active = getattr(self.policy, "active_adapter", None)
        return active if isinstance(active, str) else None

    @adapter.setter
    def adapter(self, name: str | None) -> None:
        self._adapter = name

    def token_strings(self, token_ids: Sequence[int]) -> list[str]:
        """Each token's text (``"token_id:N"`` when the policy has no tokenizer)."""
        tokenizer = getattr(self.policy, "tokenizer", None)
        if tokenizer is None:
            return [f"token_id:{t}" for t in token_ids]
        return [tokenizer.decode([t], skip_special_tokens=False) for t in token_ids]

    async def complete(self, request: UpstreamRequest) -> Completion:
        """Samples one assistant turn for ``request`` (see the module doc for the sampling)."""
        if self._hf:
            return await self._complete_hf(request)
        generation = GenerationRequest(
            messages=list(request.messages),
            tools=request.tools if request.parse_tool_calls else None,
        )
        return (await self.policy.agenerate([generation]))[0]

    async def _complete_hf(self, request: UpstreamRequest) -> Completion:
        from envkit.policies.hf import IdsRequest

        policy = self.policy
        try:
            ids = policy.render(
                GenerationRequest(messages=list(request.messages), tools=request.tools)
            )
        except Exception as e:  # the template refused the conversation, or it is too long
            raise UpstreamRequestError(f"cannot render the conversation: {e}") from None
        params = self._params(request)
        limit = getattr(policy.model.config, "max_position_embeddings", None)
        if limit is not None and len(ids) + params.max_tokens > limit:
            raise UpstreamRequestError(
                f"the prompt has {len(ids)} tokens; with max_tokens={params.max_tokens} it "
                f"exceeds the model's context of {limit} tokens. Shorten the conversation or "
                "lower max_tokens"
            )
        tools = request.tools if request.parse_tool_calls else None
        ids_request = IdsRequest(ids, params, adapter=self._adapter, tools=tools)
        return (await policy.agenerate_ids([ids_request]))[0]

    def _params(self, request: UpstreamRequest) -> Any:
        policy = self.policy
        try:
            if self._sampling == "policy":
                if request.max_tokens is None:
                    return policy.sampling_params()
                return policy.sampling_params(
                    max_tokens=min(request.max_tokens, policy.max_new_tokens)
                )
            overrides: dict[str, Any] = {}
            if request.max_tokens is not None:
                overrides["max_tokens"] = request.max_tokens
            if request.temperature is not None:
                overrides["temperature"] = request.temperature
            if request.top_p is not None:
                overrides["top_p"] = request.top_p
            if request.top_k is not None:
                overrides["top_k"] = max(0, request.top_k)
            if request.seed is not None:
                overrides["seed"] = request.seed
            return policy.sampling_params(**overrides)
        except ValueError as e:
            raise UpstreamRequestError(str(e)) from None
