"""``HFPolicy``: sample assistant turns from a local transformers model, batched across episodes.

Rollouts call ``agenerate`` once per episode turn with many episodes in flight. ``HFPolicy``
gathers those concurrent calls into batches (dynamic micro-batching): each request joins a
queue, and a worker takes up to ``max_batch_size`` pending requests, left-pads them and runs one
``model.generate`` in a worker thread, so the event loop (env steps, tools, other episodes) keeps
running meanwhile. Requests that arrive during a generation form the next batch.

One public call does all generation: ``agenerate_ids`` (``generate_ids`` synchronously) takes
token-id prompts (``IdsRequest``), each with its own ``SamplingParams`` and adapter name, and
returns ``Completion``s. ``agenerate`` renders conversations and calls it; so do ``envkit serve``
(``envkit.serving.engine``) and ``VLLMPolicy``, which only replaces the sampling backend,
``sample_batch``. One batcher, one ``GenerationStats`` (``policy.stats``).

Each ``Completion`` carries what a trainer needs: ``prompt_token_ids`` (the chat-template
rendering of the conversation), ``token_ids`` (the sampled tokens, without padding, including
the end-of-turn token when one was generated), ``logprobs`` and ``finish_reason``
(``"stop"``: an end-of-turn/EOS token was generated; ``"length"``: ``max_new_tokens`` ran out).

``logprobs[i]`` is ``log softmax(logits / temperature)[token_ids[i]]``: the log-probability of the
sampled token under the model's temperature-scaled distribution, before top-k/top-p truncation
(the convention of TRL's GRPO, which scores completions with ``logits / temperature``). At
``temperature=1`` these are the model's own log-probabilities; with greedy decoding
(``temperature=0``) they are taken at temperature 1.

Devices: ``HFPolicy(model, tokenizer, device=...)`` moves the model (``None``: leave it where it
is); ``HFPolicy.from_pretrained(name)`` loads it on ``device="auto"`` (the first CUDA GPU when
torch sees one, with bfloat16; else the CPU, float32). See ``envkit.devices``.

Engines: ``engine="padded"`` (the default, and what ``"auto"`` means for now) left-pads each
batch and runs ``model.generate``; ``engine="continuous"`` (experimental) feeds requests to
transformers' continuous-batching manager with paged attention as they arrive (see
``envkit.policies.hf_continuous``); it needs ``top_p=1`` and ``top_k=0`` for exact
log-probabilities and does not switch adapters.

Tool calls are parsed from the model's text when the request offers tools, in the format its chat
template uses (Hermes/Qwen ``<tool_call>``, Llama 3, Mistral, Qwen3-Coder, GLM, DeepSeek:
``policy.tool_format``, chosen by ``envkit.toolcalls.detect_format``).

Example:
    >>> from envkit.policies import HFPolicy
    >>> policy = HFPolicy.from_pretrained("tiny-random", max_new_tokens=4, seed=0)
    >>> c = policy([{"role": "user", "content": "hi"}])
    >>> len(c.token_ids) == len(c.logprobs) <= 4
    True
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from envkit._async import run_sync, to_thread
from envkit._tokens import stop_token_ids as _default_stops
from envkit.chat_render import render_prompt
from envkit.chat_render import template_message as _template_message  # noqa: F401 (old path)
from envkit.policies.base import BasePolicy
from envkit.toolcalls import detect_format
from envkit.types import Completion, GenerationRequest, Message, Usage

__all__ = [
    "BatchStats",
    "GenerationStats",
    "HFPolicy",
    "IdsRequest",
    "Sample",
    "SamplingParams",
    "completion_from_tokens",
    "render_prompt",
]

_UNSET: Any = object()


@dataclass(frozen=True)
class SamplingParams:
    """How one request is sampled; checked when built (``ValueError`` names each bad field).

    Attributes:
        max_tokens: Most tokens sampled (>= 1).
        temperature: Sampling temperature (>= 0; ``0`` decodes greedily).
        top_p: Nucleus sampling mass in (0, 1] (``1.0``: off).
        top_k: Keep only the ``top_k`` most likely tokens (>= 0; ``0``: off).
        stop_token_ids: Tokens that end this request's turn, besides the policy's own stop tokens
            (which always apply).
        seed: Makes the request reproducible (see ``HFPolicy.agenerate_ids``); ``None``: the
            policy's ``seed``.

    Example:
        >>> SamplingParams(max_tokens=8, temperature=0, stop_token_ids=[2]).stop_token_ids
        (2,)
        >>> SamplingParams(top_p=0)
        Traceback (most recent call last):
        ...
        ValueError: invalid SamplingParams: top_p must be in (0, 1], got 0
    """

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        problems = _sampling_problems(self.max_tokens, self.temperature, self.top_p, self.top_k)
        stops = self.stop_token_ids
        if isinstance(stops, (str, bytes)) or not isinstance(stops, Iterable):
            problems.append(f"stop_token_ids must be a sequence of token ids, got {stops!r}")
        else:
            stops = tuple(stops)
            bad = [t for t in stops if not _is_int(t) or t < 0]
            if bad:
                problems.append(f"stop_token_ids must be token ids (ints >= 0), got {bad[:5]}")
            object.__setattr__(self, "stop_token_ids", stops)
        if self.seed is not None and not _is_int(self.seed):
            problems.append(f"seed must be an int or None, got {self.seed!r}")
        if problems:
            raise ValueError("invalid SamplingParams: " + "; ".join(problems))
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_p", float(self.top_p))

    @property
    def batch_key(self) -> tuple[Any, ...]:
        """What requests sampled in one batch share: every field but ``seed``."""
        return (self.max_tokens, self.temperature, self.top_p, self.top_k, self.stop_token_ids)


@dataclass(frozen=True)
class IdsRequest:
    """One prompt given as token ids, how to sample it and with which adapter.

    Attributes:
        prompt_ids: The prompt's token ids (non-empty), e.g. ``HFPolicy.render(request)``.
        params: How to sample; ``None``: the policy's own settings (``sampling_params()``).
        adapter: A loaded peft adapter's name; ``None``: the policy's current choice
            (``use_adapter``; until that is called, the model as it is).
        tools: The tool schemas the request offered: tool calls are parsed from the completion
            only when given.

    Example:
        >>> IdsRequest([1, 2, 3], SamplingParams(max_tokens=4)).prompt_ids
        (1, 2, 3)
        >>> IdsRequest([1], adapter="")
        Traceback (most recent call last):
        ...
        ValueError: invalid IdsRequest: adapter must be an adapter name or None, got ''
    """

    prompt_ids: Sequence[int]
    params: SamplingParams | None = None
    adapter: str | None = None
    tools: Sequence[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        problems = []
        ids = self.prompt_ids
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            problems.append(f"prompt_ids must be a sequence of token ids, got {type(ids).__name__}")
        else:
            ids = tuple(ids)
            if not ids:
                problems.append(
                    "prompt_ids is empty; pass the prompt's token ids "
                    "(HFPolicy.render(request) gives them)"
                )
            bad = [t for t in ids if not _is_int(t) or t < 0]
            if bad:
                problems.append(f"prompt_ids must be token ids (ints >= 0), got {bad[:5]}")
            object.__setattr__(self, "prompt_ids", ids)
        if self.params is not None and not isinstance(self.params, SamplingParams):
            problems.append(
                f"params must be a SamplingParams or None, got {type(self.params).__name__}"
            )
        if self.adapter is not None and (not isinstance(self.adapter, str) or not self.adapter):
            problems.append(f"adapter must be an adapter name or None, got {self.adapter!r}")
        if self.tools is not None:
            if not all(isinstance(t, dict) for t in self.tools):
                problems.append("tools must be a list of OpenAI tool schemas (dicts) or None")
            object.__setattr__(self, "tools", list(self.tools) or None)
        if problems:
            raise ValueError("invalid IdsRequest: " + "; ".join(problems))


@dataclass
class Sample:
    """What a sampling backend (``HFPolicy.sample_batch``) returns for one prompt.

    ``token_ids`` may run past the first stop token (padding of a batch); the policy cuts them.
    ``logprobs[i]`` is the log-probability of ``token_ids[i]`` (see the module doc).
    """

    token_ids: list[int]
    logprobs: list[float]


@dataclass
class GenerationStats:
    """Counts of the batches a policy sampled (``policy.stats``; ``GET /envkit/stats``)."""

    batches: int = 0
    """Batches sampled (``model.generate`` or backend calls)."""
    requests: int = 0
    """Requests answered."""
    max_batch: int = 0
    """Largest batch so far."""
    batches_by_adapter: dict[str, int] = field(default_factory=dict)
    """Batches per adapter name (``""``: the base model, or the model as it is)."""

    @property
    def mean_batch(self) -> float:
        """Requests per batch."""
        return self.requests / self.batches if self.batches else 0.0

    def record(self, size: int, adapter: str | None = None) -> None:
        """Counts one batch of ``size`` requests sampled with ``adapter``."""
        self.batches += 1
        self.requests += size
        self.max_batch = max(self.max_batch, size)
        name = adapter or ""
        self.batches_by_adapter[name] = self.batches_by_adapter.get(name, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        """The counts as JSON-ready data."""
        return {
            "batches": self.batches,
            "requests": self.requests,
            "max_batch": self.max_batch,
            "batches_by_adapter": dict(self.batches_by_adapter),
        }


BatchStats = GenerationStats
"""The name of ``GenerationStats`` before it was shared with ``envkit serve``."""


@dataclass
class _Pending:
    request: IdsRequest
    """With ``params`` resolved (never None)."""
    future: asyncio.Future[Completion]

    @property
    def key(self) -> tuple[Any, ...]:
        assert self.request.params is not None
        return (self.request.adapter, self.request.params.batch_key)


@dataclass
class _LoopState:
    """The queue and worker of one event loop (``generate`` runs each call on a fresh loop)."""

    pending: deque[_Pending] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None


class HFPolicy(BasePolicy):
    """A policy that samples from a local transformers causal LM, batching concurrent requests.

    Every generation goes through one call, ``agenerate_ids`` (``generate_ids`` synchronously):
    token-id prompts (``IdsRequest``), each with its own ``SamplingParams`` and adapter, in;
    ``Completion``s with token ids and log-probabilities out. ``agenerate`` (episodes) renders
    the conversations and calls it with the policy's own settings; ``envkit serve`` and
    ``VLLMPolicy`` use it too. Concurrent calls are batched: requests that share an adapter and
    sampling parameters (all but the seed) are sampled together by ``sample_batch``, the one
    method a different sampling backend overrides.

    Args:
        model: A ``transformers`` causal LM (or a peft model wrapping one), on its device.
        tokenizer: Its tokenizer; it must have a chat template.
        max_new_tokens: Most tokens sampled per turn.
        temperature: Sampling temperature; ``0`` decodes greedily.
        top_p: Nucleus sampling mass (``1.0``: off).
        top_k: Keep only the ``top_k`` most likely tokens (``0``: off).
        max_batch_size: Most requests per ``model.generate`` call.
        batch_wait_s: How long the worker waits for more requests when the queue holds fewer than
            ``max_batch_size``; it keeps waiting while newcomers arrive within ``batch_wait_s`` of
            each other, at most ``10 * batch_wait_s`` (concurrent episodes join one batch).
        seed: Makes sampling reproducible (the batch index is mixed in; the global torch RNG is
            left untouched). ``None``: torch's global RNG.
        stop_token_ids: Tokens that end a turn; default: the tokenizer's EOS, ``<|im_end|>``
            and the model's ``generation_config.eos_token_id``.
        adapter: A peft adapter directory to load (and use) on top of ``model``.
        adapter_name: The name to load ``adapter`` under.
        device: Move the model here: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``
            (``None``: leave it where it is).
        dtype: With ``device``: the model's dtype (``"auto"``: bf16 on CUDA, fp32 on CPU).
        engine: ``"padded"``, ``"continuous"`` (experimental) or ``"auto"`` (padded for now).

    Example:
        >>> policy = HFPolicy.from_pretrained("tiny-random", max_new_tokens=2, temperature=0)
        >>> request = GenerationRequest(messages=[Message(role="user", content="hi")])
        >>> policy.generate([request])[0].finish_reason
        'length'
        >>> ids = policy.render(request)
        >>> greedy, sampled = policy.generate_ids(
        ...     [
        ...         IdsRequest(ids, SamplingParams(max_tokens=3, temperature=0)),
        ...         IdsRequest(ids, SamplingParams(max_tokens=5, seed=7)),
        ...     ]
        ... )
        >>> len(greedy.token_ids), len(sampled.token_ids) <= 5, len(sampled.logprobs) <= 5
        (3, True, True)
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        max_batch_size: int = 32,
        batch_wait_s: float = 0.005,
        seed: int | None = None,
        stop_token_ids: Sequence[int] | None = None,
        adapter: str | Path | None = None,
        adapter_name: str = "default",
        device: str | None = None,
        dtype: Any = "auto",
        engine: str = "auto",
    ) -> None:
        _check_args(max_new_tokens, temperature, top_p, top_k, max_batch_size, batch_wait_s)
        self.engine = _resolve_engine(engine, temperature, top_p, top_k)
        if device is not None:
            from envkit.devices import resolve_device, resolve_dtype

            where = resolve_device(device)
            model = model.to(device=where, dtype=resolve_dtype(dtype, where))
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "the tokenizer has no chat template; HFPolicy renders conversations with it. Set "
                "tokenizer.chat_template (envkit.models.chatml_tools_template() gives a ChatML "
                "one) or use an instruct model"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.tool_format = detect_format(tokenizer)  # envkit.toolcalls: parse/render tool calls
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.seed = seed
        self.stop_token_ids = (
            list(stop_token_ids) if stop_token_ids is not None else _default_stops(model, tokenizer)
        )
        if not self.stop_token_ids:
            raise ValueError("no stop token: the tokenizer has no eos_token; pass stop_token_ids")
        pad = tokenizer.pad_token_id
        self.pad_token_id: int = pad if pad is not None else self.stop_token_ids[0]
        self.stats = GenerationStats()
        self._lock = threading.Lock()  # one batch (or adapter change) at a time
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._adapter: Any = _UNSET
        self._continuous: Any = None
        if adapter is not None:
            self.load_adapter(adapter, adapter_name)
            self.use_adapter(adapter_name)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, *, device: str | None = "auto", dtype: Any = "auto", **kwargs: Any
    ) -> HFPolicy:
        """Loads a model with ``envkit.models.load_model`` and wraps it.

        Args:
            name_or_path: ``"smollm2-135m"``, ``"tiny-random"``, a local model directory
                (optionally ``"hf:/path"``) or a hub id.
            device: ``"auto"`` (default: the first CUDA GPU when there is one, else the CPU),
                ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
            dtype: ``"auto"`` (bf16 on CUDA, fp32 on CPU), a dtype name or a ``torch.dtype``.
            **kwargs: ``HFPolicy`` arguments (``max_new_tokens``, ``temperature``, ``adapter``...).

        Raises:
            RuntimeError: a CUDA device was asked for that torch does not see.
        """
        from envkit.devices import resolve_device, resolve_dtype
        from envkit.models import load_model

        where = resolve_device(device)
        model, tokenizer = load_model(name_or_path, device=where, dtype=resolve_dtype(dtype, where))
        return cls(model, tokenizer, **kwargs)

    @property
    def runtime(self) -> dict[str, str]:
        """``{"device": ..., "dtype": ..., "engine": ...}`` the policy samples with."""
        from envkit.devices import describe

        return {**describe(self.model), "engine": self.engine}

    def close(self) -> None:
        """Stops the continuous-batching engine's thread, if one runs (padded: nothing to do)."""
        if self._continuous is not None:
            self._continuous.close()

    # ------------------------------------------------------------------ adapters

    @property
    def adapters(self) -> list[str]:
        """Names of the peft adapters on the model (empty for a plain model)."""
        peft = sys.modules.get("peft")  # not imported: the model cannot be a PeftModel
        if peft is None or not isinstance(self.model, peft.PeftModel):
            return []  # (a model unwrapped by unload() may keep a stale peft_config: peft<0.18)
        return list(self.model.peft_config)

    def load_adapter(self, path: str | Path, name: str = "default") -> None:
        """Loads a peft (LoRA) adapter from ``path`` under ``name`` (inference only).

        A plain model is wrapped in a ``peft.PeftModel`` (peft injects the adapter layers into
        the base model in place). Loading does not activate it: call ``use_adapter(name)`` or
        name it in ``IdsRequest.adapter``. Runs between batches.

        Raises:
            ValueError: ``path`` is not a peft adapter directory, or ``name`` is taken.
        """
        from peft import PeftModel

        path = Path(path).expanduser()
        if not (path / "adapter_config.json").is_file():
            raise ValueError(
                f"{str(path)!r} is not a peft adapter directory (no adapter_config.json); pass the "
                "folder written by model.save_pretrained(dir) of a peft model"
            )
        if name in self.adapters:
            raise ValueError(f"an adapter named {name!r} is already loaded; pick another name")
        with self._lock:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(path), adapter_name=name, is_trainable=False)
            else:
                self.model = PeftModel.from_pretrained(
                    self.model, str(path), adapter_name=name, is_trainable=False
                )
            self.model.eval()

    def unload_adapter(self, name: str) -> None:
        """Deletes adapter ``name`` from the model, between batches.

        Deleting the last adapter unwraps the peft model (peft removes its layers). When ``name``
        was the ``use_adapter`` choice, requests without an adapter use the base model again.

        Raises:
            ValueError: no adapter of that name is loaded.
        """
        with self._lock:
            if name not in self.adapters:
                raise ValueError(f"no adapter named {name!r}; loaded: {self.adapters or 'none'}")
            if self._adapter == name:
                self._adapter = None
            others = [a for a in self.adapters if a != name]
            if not others:  # the last one: back to the plain model
                self.model = self.model.unload()
                return
            if self.model.active_adapter == name:
                self.model.set_adapter(others[0])
            self.model.delete_adapter(name)

    def use_adapter(self, name: str | None) -> None:
        """Samples with adapter ``name`` from the next batch on; ``None``: the base model.

        Requests that name no adapter (``IdsRequest.adapter=None``, every ``agenerate`` request)
        use this choice. Until this is called the policy leaves the model's adapter state alone
        (a trainer may manage it).

        Raises:
            ValueError: no adapter of that name is loaded.
        """
        if self.engine == "continuous":
            raise ValueError(
                "engine='continuous' samples with the model's active adapter and cannot switch "
                "adapters; use engine='padded' to compare adapters"
            )
        if name is not None and name not in self.adapters:
            raise ValueError(
                f"no adapter named {name!r}; loaded: {self.adapters or 'none'}. "
                "Load one with policy.load_adapter(path, name)"
            )
        with self._lock:
            self._adapter = name

    def _adapter_context(self, name: str | None) -> contextlib.AbstractContextManager[Any]:
        """Activates adapter ``name`` (``None``: the ``use_adapter`` choice) for one batch."""
        if name is not None and name not in self.adapters:
            raise ValueError(
                f"no adapter named {name!r}; loaded: {self.adapters or 'none'}. "
                "Load one with policy.load_adapter(path, name)"
            )
        target = self._adapter if name is None else name
        if target is _UNSET or not self.adapters:
            return contextlib.nullcontext()
        if target is None:
            return self.model.disable_adapter()
        if self.model.active_adapter != target:
            self.model.set_adapter(target)
        return contextlib.nullcontext()

    @property
    def adapter_in_use(self) -> str | None:
        """The adapter requests without one sample with: the ``use_adapter`` choice, or ``None``
        (the base model, or, before any ``use_adapter`` call, whatever the model has active)."""
        return self._adapter if isinstance(self._adapter, str) else None

    def _adapter_label(self, name: str | None) -> str:
        """The adapter a batch samples with, for ``stats`` (``""``: base or as-is)."""
        if name is not None:
            return name
        return self._adapter if isinstance(self._adapter, str) else ""

    # ------------------------------------------------------------------ prompts

    def render(self, request: GenerationRequest) -> list[int]:
        """The prompt token ids of a request: its chat-template rendering, ready to generate.

        Raises:
            ValueError: the prompt leaves no room for ``max_new_tokens`` in the model's context.
        """
        ids = render_prompt(self.tokenizer, self.tool_format, request)
        self._check_context(len(ids), self.max_new_tokens)
        return ids

    def _check_context(self, prompt_tokens: int, max_tokens: int) -> None:
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and prompt_tokens + max_tokens > limit:
            raise ValueError(
                f"the prompt has {prompt_tokens} tokens; with max_new_tokens={max_tokens} it "
                f"exceeds the model's context of {limit} tokens. Shorten the conversation (fewer "
                "turns, shorter tool outputs) or lower max_new_tokens"
            )

    def sampling_params(self, **overrides: Any) -> SamplingParams:
        """The policy's own sampling settings (what ``agenerate`` uses); ``overrides`` replace some.

        Example:
            >>> policy = HFPolicy.from_pretrained("tiny-random", max_new_tokens=4, temperature=0)
            >>> params = policy.sampling_params(top_k=5)
            >>> params.max_tokens, params.temperature, params.top_k
            (4, 0.0, 5)
        """
        values: dict[str, Any] = {
            "max_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
        }
        values.update(overrides)
        return SamplingParams(**values)

    def stops_for(self, params: SamplingParams) -> list[int]:
        """The tokens that end a turn sampled with ``params``: the policy's and the request's."""
        return list(dict.fromkeys([*self.stop_token_ids, *params.stop_token_ids]))

    # ------------------------------------------------------------------ generation

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """Answers each conversation with the policy's own settings, through ``agenerate_ids``."""
        if not requests:
            return []
        params = self.sampling_params()
        ids_requests = [IdsRequest(self.render(r), params, tools=r.tools) for r in requests]
        return await self.agenerate_ids(ids_requests)

    def generate_ids(self, requests: Sequence[IdsRequest]) -> list[Completion]:
        """Synchronous ``agenerate_ids``."""
        return run_sync(self.agenerate_ids(requests))

    async def agenerate_ids(self, requests: Sequence[IdsRequest]) -> list[Completion]:
        """Samples a completion for each token-id prompt: the policy's one generation call.

        Each ``IdsRequest`` carries its ``SamplingParams`` (``None``: the policy's) and adapter.
        Concurrent calls are batched: pending requests with the same adapter and parameters
        (the seed aside) are sampled by one ``sample_batch``; others never share a batch.

        Seeds: one batch samples from one random generator. A batch with seeded requests uses a
        mix of their seeds (the same requests, seeds and batching give the same tokens); a
        batch without any uses the policy's ``seed`` with the batch index mixed in, or torch's
        global RNG when the policy has none.

        Returns:
            One ``Completion`` per request, in order: ``prompt_token_ids``, ``token_ids`` (cut
            after the first stop token), ``logprobs``, ``finish_reason``, the decoded message
            (tool calls parsed when the request offered ``tools``).

        Raises:
            TypeError: an item is not an ``IdsRequest``.
            ValueError: a prompt with its ``max_tokens`` exceeds the model's context, an adapter
                is not loaded, or the continuous engine is asked for what it cannot do.
        """
        items = [self._resolve(r) for r in requests]
        if not items:
            return []
        loop = asyncio.get_running_loop()
        if self.engine == "continuous":
            return list(await asyncio.gather(*(self._continuous_one(r) for r in items)))
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = _LoopState()
        futures = []
        for request in items:
            future: asyncio.Future[Completion] = loop.create_future()
            state.pending.append(_Pending(request, future))
            futures.append(future)
        if state.worker is None or state.worker.done():
            state.worker = loop.create_task(self._work(state), name="envkit-hf-batcher")
        return list(await asyncio.gather(*futures))

    def _resolve(self, request: IdsRequest) -> IdsRequest:
        """Checks a request and fills in the policy's parameters when it has none."""
        if not isinstance(request, IdsRequest):
            raise TypeError(
                f"agenerate_ids takes IdsRequest items, got {type(request).__name__}; build one "
                "with IdsRequest(prompt_ids, SamplingParams(...)) (agenerate takes conversations)"
            )
        params = request.params or self.sampling_params()
        self._check_context(len(request.prompt_ids), params.max_tokens)
        if request.adapter is not None and request.adapter not in self.adapters:
            raise ValueError(
                f"no adapter named {request.adapter!r}; loaded: {self.adapters or 'none'}. "
                "Load one with policy.load_adapter(path, name)"
            )
        if self.engine == "continuous":
            if request.adapter is not None:
                raise ValueError("engine='continuous' cannot switch adapters per request")
            if params.batch_key != self.sampling_params().batch_key:
                raise ValueError(
                    "engine='continuous' samples with the policy's own settings only; leave "
                    "IdsRequest.params None or use engine='padded' for per-request parameters"
                )
        if request.params is params:
            return request
        return replace(request, params=params)

    async def _work(self, state: _LoopState) -> None:
        while state.pending:
            await self._await_arrivals(state)
            batch = _take_batch(state.pending, self.max_batch_size)
            if not batch:
                continue
            try:
                results = await to_thread(self._run_batch, [item.request for item in batch])
            except asyncio.CancelledError:
                for item in batch:
                    item.future.cancel()
                raise
            except Exception as e:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(e)
                continue
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)

    async def _await_arrivals(self, state: _LoopState) -> None:
        """Lets concurrent requests join: waits while newcomers keep arriving (at most 10 gaps)."""
        seen = len(state.pending)
        for _ in range(10):
            if seen >= self.max_batch_size or self.batch_wait_s <= 0:
                return
            await asyncio.sleep(self.batch_wait_s)
            if len(state.pending) == seen:
                return
            seen = len(state.pending)

    def _run_batch(self, requests: list[IdsRequest]) -> list[Completion]:
        """Samples one batch (in a worker thread) with ``sample_batch``; counts it in ``stats``."""
        with self._lock:
            samples = self.sample_batch(requests)
            if len(samples) != len(requests):
                raise RuntimeError(
                    f"{type(self).__name__}.sample_batch returned {len(samples)} samples for "
                    f"{len(requests)} requests"
                )
            self.stats.record(len(requests), self._adapter_label(requests[0].adapter))
        return [self._complete(r, s) for r, s in zip(requests, samples, strict=True)]

    def sample_batch(self, requests: Sequence[IdsRequest]) -> list[Sample]:
        """The sampling backend: samples one batch. Override this to sample elsewhere (vLLM).

        Called from a worker thread with the policy's lock held. The requests share their
        adapter and ``params`` (resolved, never ``None``) except ``params.seed``; their stop
        tokens are ``stops_for(params)``. Return one ``Sample`` per request, in order: the
        sampled token ids (anything after the first stop token is cut by the caller) and each
        token's ``log softmax(logits / temperature)`` (temperature 1 when greedy). Raise when the
        backend cannot give log-probabilities: never return made-up values.
        """
        import torch

        params = requests[0].params
        assert params is not None
        stops = self.stops_for(params)
        with torch.no_grad():
            device = next(self.model.parameters()).device
            width = max(len(r.prompt_ids) for r in requests)
            input_ids = torch.full((len(requests), width), self.pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros((len(requests), width), dtype=torch.long)
            for i, r in enumerate(requests):
                n = len(r.prompt_ids)
                input_ids[i, width - n :] = torch.tensor(r.prompt_ids, dtype=torch.long)
                attention_mask[i, width - n :] = 1
            recorder = _LogprobRecorder(params.temperature if params.temperature > 0 else 1.0)
            was_training = self.model.training
            self.model.eval()
            try:
                with self._adapter_context(requests[0].adapter), self._rng(device, requests):
                    out = self.model.generate(
                        input_ids=input_ids.to(device),
                        attention_mask=attention_mask.to(device),
                        generation_config=self._generation_config(params, stops),
                        logits_processor=_processor_list(recorder),
                    )
            finally:
                if was_training:
                    self.model.train()
            sequences = out.sequences if hasattr(out, "sequences") else out
            rows = sequences[:, width:].tolist()
            logprobs = recorder.finish(sequences).tolist()
        return [Sample(rows[i], logprobs[i]) for i in range(len(requests))]

    def _complete(self, request: IdsRequest, sample: Sample) -> Completion:
        assert request.params is not None
        if len(sample.token_ids) != len(sample.logprobs):
            raise RuntimeError(
                f"{type(self).__name__}.sample_batch gave {len(sample.token_ids)} tokens but "
                f"{len(sample.logprobs)} log-probabilities"
            )
        return completion_from_tokens(
            self.tokenizer,
            self.tool_format,
            self.stops_for(request.params),
            request.prompt_ids,
            sample.token_ids,
            sample.logprobs,
            tools=request.tools,
        )

    async def _continuous_one(self, request: IdsRequest) -> Completion:
        from envkit.policies.hf_continuous import ContinuousEngine

        if self._continuous is None:
            params = self.sampling_params()
            self._continuous = ContinuousEngine(
                self.model,
                self._generation_config(params, self.stop_token_ids),
                stop_token_ids=self.stop_token_ids,
                max_new_tokens=self.max_new_tokens,
                seed=self.seed,
            )
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(value: Any) -> None:
            if future.done():
                return
            if isinstance(value, BaseException):
                future.set_exception(value)
            else:
                future.set_result(value)

        self.model.eval()  # sampling without dropout; trainers switch train mode back themselves
        self._continuous.submit(list(request.prompt_ids), done)
        tokens, logprobs = await future
        self.stats.record(1)
        return self._complete(request, Sample(list(tokens), list(logprobs)))

    def _generation_config(self, params: SamplingParams, stops: Sequence[int]) -> Any:
        from transformers import GenerationConfig

        sample = params.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "do_sample": sample,
            "num_beams": 1,
            "eos_token_id": list(stops),
            "pad_token_id": self.pad_token_id,
            "return_dict_in_generate": True,
            # Explicit neutral values, so a checkpoint's generation_config.json cannot change
            # what is sampled behind the policy's back.
            "repetition_penalty": 1.0,
            "no_repeat_ngram_size": 0,
            "min_length": 0,
        }
        if sample:
            kwargs.update(
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k,
                typical_p=1.0,
            )
        return GenerationConfig(**kwargs)

    def _rng(
        self, device: Any, requests: Sequence[IdsRequest]
    ) -> contextlib.AbstractContextManager[Any]:
        seeds = [r.params.seed if r.params is not None else None for r in requests]
        if any(seed is not None for seed in seeds):
            mixed = 0
            for seed in seeds:
                mixed = (mixed * 1_000_003 + (seed if seed is not None else -1)) % 2**61
            return _seeded(mixed, device)
        if self.seed is None:
            return contextlib.nullcontext()
        return _seeded(self.seed * 1_000_003 + self.stats.batches, device)


def _take_batch(pending: deque[_Pending], size: int) -> list[_Pending]:
    """Takes the oldest live request and up to ``size - 1`` more with its key, in order."""
    while pending and pending[0].future.done():  # callers that were cancelled (timeouts)
        pending.popleft()
    if not pending:
        return []
    key = pending[0].key
    batch: list[_Pending] = []
    rest: deque[_Pending] = deque()
    for item in pending:
        if item.future.done():
            continue
        if len(batch) < size and item.key == key:
            batch.append(item)
        else:
            rest.append(item)
    pending.clear()
    pending.extend(rest)
    return batch


@contextlib.contextmanager
def _seeded(seed: int, device: Any) -> Iterator[None]:
    import torch

    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed % (2**63))
        yield


class _LogprobRecorder:
    """A logits processor that records ``log softmax(logits / T)`` of each sampled token.

    It runs before the sampling warpers (temperature, top-k, top-p) and keeps one step of
    log-probabilities: at step t it reads the token chosen at step t-1 from ``input_ids``.
    """

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature
        self.prev: Any = None
        self.steps: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self.prev is not None:
            self.steps.append(self.prev.gather(1, input_ids[:, -1:]).squeeze(1))
        self.prev = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def finish(self, sequences: Any) -> Any:
        import torch

        if self.prev is not None:
            self.steps.append(self.prev.gather(1, sequences[:, -1:]).squeeze(1))
            self.prev = None
        if not self.steps:
            return torch.zeros((sequences.shape[0], 0))
        return torch.stack(self.steps, dim=1).cpu()


def _processor_list(recorder: _LogprobRecorder) -> Any:
    from transformers import LogitsProcessorList

    return LogitsProcessorList([recorder])


def completion_from_tokens(
    tokenizer: Any,
    tool_format: Any,
    stop_token_ids: Sequence[int],
    prompt_ids: Sequence[int],
    row: Sequence[int],
    logprobs: Sequence[float],
    *,
    tools: Sequence[dict[str, Any]] | None = None,
) -> Completion:
    """A ``Completion`` from sampled tokens: cut at the first stop token, decoded, tools parsed.

    ``token_ids`` keep the stop token (``finish_reason="stop"``); without one the turn ran out of
    tokens (``"length"``). Tool calls are parsed (with the offered ``tools``' schemas) only when
    the request offered tools. Shared by ``HFPolicy`` and ``ServerPolicy``.
    """
    stops = set(stop_token_ids)
    row = list(row)
    end = next((i for i, t in enumerate(row) if t in stops), None)
    if end is None:
        token_ids, finish = row, "length"
        text_ids = row
    else:
        token_ids, finish = row[: end + 1], "stop"
        text_ids = row[:end]
    text = tokenizer.decode(text_ids, skip_special_tokens=False)
    if tools:
        parsed = tool_format.parse(text, tools=list(tools))
        message = Message(
            role="assistant",
            content=parsed.content if parsed.content or not parsed.tool_calls else None,
            tool_calls=parsed.tool_calls or None,
        )
    else:
        message = Message(role="assistant", content=text)
    return Completion(
        message=message,
        prompt_token_ids=list(prompt_ids),
        token_ids=token_ids,
        logprobs=list(logprobs[: len(token_ids)]),
        finish_reason=finish,
        usage=Usage(prompt_tokens=len(prompt_ids), completion_tokens=len(token_ids)),
    )


def _resolve_engine(engine: str, temperature: float, top_p: float, top_k: int) -> str:
    if engine not in ("auto", "padded", "continuous"):
        raise ValueError(f"engine must be 'auto', 'padded' or 'continuous', got {engine!r}")
    if engine == "auto":
        return "padded"
    if engine == "continuous":
        from envkit.policies.hf_continuous import unsupported_reason

        reason = unsupported_reason(temperature, top_p, top_k)
        if reason is not None:
            raise ValueError(f"engine='continuous' is not available: {reason}")
    return engine


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _sampling_problems(max_tokens: Any, temperature: Any, top_p: Any, top_k: Any) -> list[str]:
    """What is wrong with these sampling settings (empty: nothing)."""
    problems = []
    if not _is_int(max_tokens) or max_tokens < 1:
        problems.append(f"max_tokens must be >= 1 (an int), got {max_tokens!r}")
    if not _is_number(temperature) or temperature < 0:
        problems.append(f"temperature must be >= 0 (0: greedy), got {temperature!r}")
    if not _is_number(top_p) or not 0 < top_p <= 1:
        problems.append(f"top_p must be in (0, 1], got {top_p!r}")
    if not _is_int(top_k) or top_k < 0:
        problems.append(f"top_k must be >= 0 (an int; 0: off), got {top_k!r}")
    return problems


def _check_args(
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int,
    max_batch_size: int,
    batch_wait_s: float,
) -> None:
    problems = [
        p.replace("max_tokens", "max_new_tokens", 1)
        for p in _sampling_problems(max_new_tokens, temperature, top_p, top_k)
    ]
    if max_batch_size < 1:
        problems.append(f"max_batch_size must be >= 1, got {max_batch_size}")
    if batch_wait_s < 0:
        problems.append(f"batch_wait_s must be >= 0, got {batch_wait_s}")
    if problems:
        raise ValueError("; ".join(problems))
