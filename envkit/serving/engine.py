"""``Engine``: one ``HFPolicy`` answering many HTTP threads, concurrent requests batched.

Each HTTP thread ``submit``s an ``IdsRequest`` (token ids, its ``SamplingParams`` and adapter)
and waits on the returned future. The engine owns one event loop in a worker thread and hands
every request to ``HFPolicy.agenerate_ids``, the policy's public generation call: the policy's
batcher (the same one its episodes use) gathers concurrent requests, waiting while newcomers
arrive within ``batch_wait_s`` of each other (at most ``10 * batch_wait_s``), and samples the
oldest request with every pending request that has the same adapter and sampling parameters
(temperature, top-p, top-k, max tokens, stop tokens) in one ``model.generate``. Requests for
different adapters or parameters never share a batch. Adapter loads and unloads take the
policy's lock, so they run between batches.

The log-probabilities are ``HFPolicy``'s: ``log softmax(logits / temperature)`` of each sampled
token, before top-k/top-p truncation (``temperature=0`` decodes greedily, log-probabilities at
temperature 1).

Seeds: one ``model.generate`` samples a whole batch from one random generator, so per-request
seeds (vLLM's) cannot each drive their own row. A batch with seeded requests samples from a
generator seeded with a mix of its requests' seeds: the same requests with the same seeds, batched
the same way, give the same tokens, and different seeds give different samples. Seeds do not
split batches. A batch without any seed uses the server's ``--seed`` (``HFPolicy``'s own seeding).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from pathlib import Path

from envkit.policies.hf import GenerationStats, HFPolicy, IdsRequest
from envkit.types import Completion

__all__ = ["Engine", "EngineStats"]

EngineStats = GenerationStats
"""The engine's counts are its policy's ``GenerationStats`` (kept under the old name)."""


class Engine:
    """Batches the requests of many threads onto one ``HFPolicy`` (see the module doc).

    Args:
        policy: The policy to sample with (``engine="padded"``). Requests without an adapter
            sample with the base model (the engine calls ``policy.use_adapter(None)``).
        max_batch_size: Most requests per ``model.generate`` (sets the policy's).
        batch_wait_s: How long to wait for more requests when fewer than ``max_batch_size`` wait
            (sets the policy's).
    """

    def __init__(
        self, policy: HFPolicy, *, max_batch_size: int = 32, batch_wait_s: float = 0.01
    ) -> None:
        if policy.engine != "padded":
            raise ValueError("envkit serve needs HFPolicy(engine='padded') to switch adapters")
        if max_batch_size < 1 or batch_wait_s < 0:
            raise ValueError(
                f"max_batch_size must be >= 1 and batch_wait_s >= 0, got {max_batch_size} and "
                f"{batch_wait_s}"
            )
        self.policy = policy
        policy.max_batch_size = max_batch_size
        policy.batch_wait_s = batch_wait_s
        policy.use_adapter(None)  # "model": the served name means the base model
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._worker = threading.Thread(
            target=self._loop.run_forever, name="envkit-serve-engine", daemon=True
        )
        self._worker.start()

    @property
    def stats(self) -> GenerationStats:
        """The policy's counts: batches, requests, largest batch, batches per adapter."""
        return self.policy.stats

    @property
    def default_stops(self) -> tuple[int, ...]:
        """The stop tokens every request has (the policy's)."""
        return tuple(self.policy.stop_token_ids)

    @property
    def context_length(self) -> int | None:
        """The model's context (``max_position_embeddings``), when it declares one."""
        return getattr(self.policy.model.config, "max_position_embeddings", None)

    # ------------------------------------------------------------------ adapters

    @property
    def adapters(self) -> list[str]:
        return self.policy.adapters

    def load_adapter(self, path: str | Path, name: str) -> None:
        """Loads a peft adapter between batches (``HFPolicy.load_adapter``'s errors)."""
        self.policy.load_adapter(path, name)

    def unload_adapter(self, name: str) -> None:
        """Deletes adapter ``name`` between batches (``HFPolicy.unload_adapter``).

        Raises:
            ValueError: no adapter of that name is loaded.
        """
        self.policy.unload_adapter(name)

    # ------------------------------------------------------------------ requests

    def submit(self, request: IdsRequest) -> concurrent.futures.Future[Completion]:
        """Queues one request; the future gives its ``Completion`` (or the batch's error).

        Raises:
            RuntimeError: the engine is closed.
        """
        if self._closed:
            raise RuntimeError("the engine is closed")
        return asyncio.run_coroutine_threadsafe(self._one(request), self._loop)

    async def _one(self, request: IdsRequest) -> Completion:
        try:
            [completion] = await self.policy.agenerate_ids([request])
        except asyncio.CancelledError:
            raise RuntimeError("the server is shutting down") from None
        return completion

    def close(self) -> None:
        """Stops the worker; pending requests fail. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._loop.is_running():
            done = asyncio.run_coroutine_threadsafe(_cancel_all(), self._loop)
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                done.result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._worker.join(timeout=5)
        if not self._worker.is_alive():
            self._loop.close()


async def _cancel_all() -> None:
    """Cancels every task of the running loop but this one and waits for them to end."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
