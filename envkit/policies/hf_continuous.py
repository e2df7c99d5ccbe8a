"""The continuous-batching engine of ``HFPolicy`` (``engine="continuous"``, experimental).

transformers' ``ContinuousBatchingManager`` (paged attention, ``model.init_continuous_batching``)
runs one generation loop in a background thread; requests join it the moment they arrive and
leave it the moment they finish, so the turns of concurrent episodes, which arrive at different
times, never wait for a whole padded batch to end. This module feeds it ``HFPolicy``'s requests
and routes each result back to its caller's event loop.

Sampled log-probabilities: the manager records ``log p(token)`` of the distribution it sampled
from, after its logits processors. With ``top_p=1`` and ``top_k=0`` that is
``log softmax(logits / temperature)``, ``HFPolicy``'s convention, which is why the engine
requires them (``HFPolicy`` says so at construction). Sampling is not bit-for-bit reproducible
with ``seed`` (requests share batches in arrival order); the padded engine is.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["ContinuousEngine", "unsupported_reason"]


def unsupported_reason(temperature: float, top_p: float, top_k: int) -> str | None:
    """Why the continuous engine cannot serve these settings exactly (``None``: it can)."""
    from envkit._compat_hf import continuous_batching_available

    if not continuous_batching_available():
        import transformers

        return (
            f"transformers {transformers.__version__} has no continuous batching "
            "(model.generate_batch / init_continuous_batching)"
        )
    if top_p != 1.0 or top_k != 0:
        return (
            "its log-probabilities are taken after top-p/top-k truncation, so they would not "
            "follow HFPolicy's convention (log softmax(logits / temperature)); use top_p=1 and "
            "top_k=0"
        )
    return None


CPU_CACHE_BLOCKS = 64
"""KV-cache blocks (of 256 tokens: 16,384 tokens) of a CPU model's continuous engine."""


class ContinuousEngine:
    """Submits prompts to a (lazily started) ``ContinuousBatchingManager``; see the module doc.

    Args:
        model: The transformers (or peft-wrapped) causal LM.
        generation_config: The ``GenerationConfig`` to sample with.
        stop_token_ids: Tokens that end a request.
        max_new_tokens: Most tokens per request.
        seed: Seeds the manager's sampling (not bit-for-bit reproducible across runs).
        max_batch_tokens: Tokens per forward pass of the paged cache (None: transformers' choice).
        cache_blocks: KV-cache capacity in blocks of 256 tokens (transformers' ``num_blocks``).
            ``None``: ``CPU_CACHE_BLOCKS`` when the model is on the CPU, else transformers'
            choice (a share of the free GPU memory). On the CPU transformers would otherwise
            reserve 60 % of the machine's RAM (14 GB on a 24 GB machine, for a tiny model);
            requests beyond the capacity wait for a free block instead.
    """

    def __init__(
        self,
        model: Any,
        generation_config: Any,
        *,
        stop_token_ids: list[int],
        max_new_tokens: int,
        seed: int | None = None,
        max_batch_tokens: int | None = None,
        cache_blocks: int | None = None,
    ) -> None:
        if cache_blocks is not None and cache_blocks < 1:
            raise ValueError(f"cache_blocks must be >= 1 or None, got {cache_blocks}")
        self.model = model
        self.generation_config = generation_config
        self.stop_token_ids = stop_token_ids
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.max_batch_tokens = max_batch_tokens
        self.cache_blocks = cache_blocks
        self._manager: Any = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[asyncio.AbstractEventLoop, Callable[[Any], None]]] = {}
        self._ids = itertools.count()
        self._stopping = threading.Event()
        self.requests = 0

    def _start(self) -> None:
        from transformers.generation import ContinuousBatchingConfig

        kwargs: dict[str, Any] = {"return_logprobs": True}
        if self.seed is not None:
            kwargs["seed"] = self.seed
        if self.max_batch_tokens is not None:
            kwargs["max_batch_tokens"] = self.max_batch_tokens
        kwargs["num_blocks"] = self.resolved_cache_blocks()
        target = getattr(self.model, "get_base_model", lambda: self.model)()
        self._manager = target.init_continuous_batching(
            generation_config=self.generation_config,
            continuous_batching_config=ContinuousBatchingConfig(**kwargs),
        )
        self._manager.start()
        self._stopping.clear()
        self._reader = threading.Thread(
            target=self._read, args=(self._manager,), name="envkit-hf-continuous", daemon=True
        )
        self._reader.start()

    def resolved_cache_blocks(self) -> int | None:
        """The KV-cache capacity passed to transformers (``None``: its own sizing)."""
        if self.cache_blocks is not None:
            return self.cache_blocks
        device = getattr(self.model, "device", None)
        return CPU_CACHE_BLOCKS if getattr(device, "type", "cpu") == "cpu" else None

    def submit(self, prompt_ids: list[int], on_done: Callable[[Any], None]) -> None:
        """Adds a request; ``on_done(result_or_exception)`` runs on the caller's event loop.

        ``result`` is ``(token_ids, logprobs)``.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._manager is None:
                self._start()
            request_id = f"envkit-{next(self._ids)}"
            self._waiting[request_id] = (loop, on_done)
        self.requests += 1
        try:
            self._manager.add_request(
                list(prompt_ids),
                request_id=request_id,
                max_new_tokens=self.max_new_tokens,
                eos_token_id=self.stop_token_ids,
            )
        except Exception:
            with self._lock:
                self._waiting.pop(request_id, None)
            raise

    def _read(self, manager: Any) -> None:
        try:
            self._read_results(manager)
        except BaseException as e:  # never leave a caller waiting on a dead reader
            self._fail_all(e)
            raise

    def _read_results(self, manager: Any) -> None:
        while not self._stopping.is_set():
            try:
                result = manager.get_result(timeout=0.05)
            except Exception as e:  # the manager failed: fail every waiting caller
                self._fail_all(e)
                return
            if result is None:
                if not manager.is_running() and not self._stopping.is_set():
                    self._fail_all(RuntimeError("the continuous-batching manager stopped"))
                    return
                continue
            with self._lock:
                waiter = self._waiting.pop(result.request_id, None)
            if waiter is None:
                continue
            loop, on_done = waiter
            error = getattr(result, "error", None)
            value: Any = (
                RuntimeError(f"continuous batching failed: {error}")
                if error
                else (list(result.generated_tokens), list(result.logprobs))
            )
            loop.call_soon_threadsafe(on_done, value)

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for loop, on_done in waiting.values():
            loop.call_soon_threadsafe(on_done, error)

    def close(self) -> None:
        """Stops the manager and its reader thread (a later ``submit`` starts them again)."""
        with self._lock:
            manager, self._manager = self._manager, None
        if manager is None:
            return
        self._stopping.set()
        manager.stop(block=True)
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._fail_all(RuntimeError("HFPolicy was closed while this request was in flight"))
