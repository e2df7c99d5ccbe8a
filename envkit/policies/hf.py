"""``HFPolicy``: sample assistant turns from a local transformers model, batched across episodes.

Rollouts call ``agenerate`` once per episode turn with many episodes in flight. ``HFPolicy``
gathers those concurrent calls into batches (dynamic micro-batching): each request joins a
queue, and a worker takes up to ``max_batch_size`` pending requests, left-pads them and runs one
``model.generate`` in a worker thread, so the event loop (env steps, tools, other episodes) keeps
running meanwhile. Requests that arrive during a generation form the next batch.

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
import json
import threading
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit._async import to_thread
from envkit._tokens import stop_token_ids as _default_stops
from envkit.policies.base import BasePolicy
from envkit.toolcalls import detect_format
from envkit.types import Completion, GenerationRequest, Message, Usage

__all__ = ["BatchStats", "HFPolicy", "completion_from_tokens", "render_prompt"]

_UNSET: Any = object()


@dataclass
class BatchStats:
    """Counts of the batches ``HFPolicy`` ran (for tests, benchmarks and tuning)."""

    batches: int = 0
    """``model.generate`` calls."""
    requests: int = 0
    """Requests answered."""
    max_batch: int = 0
    """Largest batch so far."""

    @property
    def mean_batch(self) -> float:
        return self.requests / self.batches if self.batches else 0.0


@dataclass
class _Pending:
    prompt_ids: list[int]
    tools: list[dict[str, Any]] | None
    """The tool schemas the request offered (None: do not parse tool calls)."""
    future: asyncio.Future[Completion]


@dataclass
class _LoopState:
    """The queue and worker of one event loop (``generate`` runs each call on a fresh loop)."""

    pending: deque[_Pending] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None


class HFPolicy(BasePolicy):
    """A policy that samples from a local transformers causal LM, batching concurrent requests.

    Args:
        model: A ``transformers`` causal LM (or a peft model wrapping one), on its device.
        tokenizer: Its tokenizer; it must have a chat template.
        max_new_tokens: Most tokens sampled per turn.
        temperature: Sampling temperature; ``0`` decodes greedily.
        top_p: Nucleus sampling mass (``1.0``: off).
        top_k: Keep only the ``top_k`` most likely tokens (``0``: off).
        max_batch_size: Most requests per ``model.generate`` call.
        batch_wait_s: How long the worker waits for more requests when the queue holds fewer than
            ``max_batch_size`` (a few milliseconds lets concurrent episodes join one batch).
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
        self.stats = BatchStats()
        self._lock = threading.Lock()  # one generate (or adapter change) at a time
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
        return list(getattr(self.model, "peft_config", {}) or {})

    def load_adapter(self, path: str | Path, name: str = "default") -> None:
        """Loads a peft (LoRA) adapter from ``path`` under ``name`` (inference only).

        A plain model is wrapped in a ``peft.PeftModel`` (peft injects the adapter layers into
        the base model in place). Loading does not activate it: call ``use_adapter(name)``.

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

    def use_adapter(self, name: str | None) -> None:
        """Samples with adapter ``name`` from the next batch on; ``None``: the base model.

        Until this is called the policy leaves the model's adapter state alone (a trainer may
        manage it).

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

    def _adapter_context(self) -> contextlib.AbstractContextManager[Any]:
        if self._adapter is _UNSET or not self.adapters:
            return contextlib.nullcontext()
        if self._adapter is None:
            return self.model.disable_adapter()
        if self.model.active_adapter != self._adapter:
            self.model.set_adapter(self._adapter)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ prompts

    def render(self, request: GenerationRequest) -> list[int]:
        """The prompt token ids of a request: its chat-template rendering, ready to generate.

        Raises:
            ValueError: the prompt leaves no room for ``max_new_tokens`` in the model's context.
        """
        ids = render_prompt(self.tokenizer, self.tool_format, request)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and len(ids) + self.max_new_tokens > limit:
            raise ValueError(
                f"the prompt has {len(ids)} tokens; with max_new_tokens={self.max_new_tokens} it "
                f"exceeds the model's context of {limit} tokens. Shorten the conversation (fewer "
                "turns, shorter tool outputs) or lower max_new_tokens"
            )
        return ids

    # ------------------------------------------------------------------ batching

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """Answers each request; concurrent calls are batched together (see the module doc)."""
        if not requests:
            return []
        prompts = [(self.render(r), list(r.tools) if r.tools else None) for r in requests]
        if self.engine == "continuous":
            return list(await asyncio.gather(*(self._continuous_one(*p) for p in prompts)))
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = _LoopState()
        futures = []
        for ids, tools in prompts:
            future: asyncio.Future[Completion] = loop.create_future()
            state.pending.append(_Pending(ids, tools, future))
            futures.append(future)
        if state.worker is None or state.worker.done():
            state.worker = loop.create_task(self._work(state), name="envkit-hf-batcher")
        return list(await asyncio.gather(*futures))

    async def _work(self, state: _LoopState) -> None:
        while state.pending:
            if len(state.pending) < self.max_batch_size and self.batch_wait_s > 0:
                await asyncio.sleep(self.batch_wait_s)
            batch: list[_Pending] = []
            while state.pending and len(batch) < self.max_batch_size:
                item = state.pending.popleft()
                if not item.future.done():  # skip callers that were cancelled (timeouts)
                    batch.append(item)
            if not batch:
                continue
            try:
                results = await to_thread(self._generate_batch, batch)
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

    async def _continuous_one(
        self, prompt_ids: list[int], tools: list[dict[str, Any]] | None
    ) -> Completion:
        from envkit.policies.hf_continuous import ContinuousEngine

        if self._continuous is None:
            self._continuous = ContinuousEngine(
                self.model,
                self._generation_config(),
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
        self._continuous.submit(prompt_ids, done)
        tokens, logprobs = await future
        self.stats.batches += 1
        self.stats.requests += 1
        self.stats.max_batch = max(self.stats.max_batch, 1)
        return self._completion(_Pending(prompt_ids, tools, future), tokens, logprobs)

    # ------------------------------------------------------------------ generation

    def _generate_batch(self, batch: list[_Pending]) -> list[Completion]:
        import torch

        with self._lock, torch.no_grad():
            device = next(self.model.parameters()).device
            width = max(len(item.prompt_ids) for item in batch)
            input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, item in enumerate(batch):
                n = len(item.prompt_ids)
                input_ids[i, width - n :] = torch.tensor(item.prompt_ids, dtype=torch.long)
                attention_mask[i, width - n :] = 1
            recorder = _LogprobRecorder(self.temperature if self.temperature > 0 else 1.0)
            was_training = self.model.training
            self.model.eval()
            try:
                with self._adapter_context(), self._rng(device):
                    out = self.model.generate(
                        input_ids=input_ids.to(device),
                        attention_mask=attention_mask.to(device),
                        generation_config=self._generation_config(),
                        logits_processor=_processor_list(recorder),
                    )
            finally:
                if was_training:
                    self.model.train()
            sequences = out.sequences if hasattr(out, "sequences") else out
            new_tokens = sequences[:, width:]
            logprobs = recorder.finish(sequences)
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.max_batch = max(self.stats.max_batch, len(batch))
            rows, row_logprobs = new_tokens.tolist(), logprobs.tolist()
        return [self._completion(item, rows[i], row_logprobs[i]) for i, item in enumerate(batch)]

    def _completion(self, item: _Pending, row: list[int], logprobs: list[float]) -> Completion:
        return completion_from_tokens(
            self.tokenizer,
            self.tool_format,
            self.stop_token_ids,
            item.prompt_ids,
            row,
            logprobs,
            tools=item.tools,
        )

    def _generation_config(self) -> Any:
        from transformers import GenerationConfig

        sample = self.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": sample,
            "num_beams": 1,
            "eos_token_id": self.stop_token_ids,
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
                temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, typical_p=1.0
            )
        return GenerationConfig(**kwargs)

    def _rng(self, device: Any) -> contextlib.AbstractContextManager[Any]:
        if self.seed is None:
            return contextlib.nullcontext()
        return _seeded(self.seed * 1_000_003 + self.stats.batches, device)


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


def render_prompt(tokenizer: Any, tool_format: Any, request: GenerationRequest) -> list[int]:
    """The prompt token ids of a request: its chat-template rendering with the generation prompt.

    Shared by ``HFPolicy`` and ``ServerPolicy`` (which sends these ids to a server), so both
    train on the same tokens. ``tool_format`` is ``envkit.toolcalls.detect_format(tokenizer)``.
    """
    messages = tool_format.prepare_messages([_template_message(m) for m in request.messages])
    text = tokenizer.apply_chat_template(
        messages, tools=request.tools or None, add_generation_prompt=True, tokenize=False
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


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


def _template_message(message: Message) -> dict[str, Any]:
    """A message as chat templates expect it: text content, tool-call arguments as dicts."""
    out = message.to_dict()
    if out.get("content") is None:
        out["content"] = ""
    for call in out.get("tool_calls") or []:
        fn = call["function"]
        try:
            args = json.loads(fn["arguments"])
        except ValueError:
            continue  # malformed JSON the model wrote: render it verbatim
        if isinstance(args, dict):
            fn["arguments"] = args
    return out


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


def _check_args(
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int,
    max_batch_size: int,
    batch_wait_s: float,
) -> None:
    problems = []
    if max_new_tokens < 1:
        problems.append(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        problems.append(f"temperature must be >= 0 (0: greedy), got {temperature}")
    if not 0 < top_p <= 1:
        problems.append(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        problems.append(f"top_k must be >= 0 (0: off), got {top_k}")
    if max_batch_size < 1:
        problems.append(f"max_batch_size must be >= 1, got {max_batch_size}")
    if batch_wait_s < 0:
        problems.append(f"batch_wait_s must be >= 0, got {batch_wait_s}")
    if problems:
        raise ValueError("; ".join(problems))
