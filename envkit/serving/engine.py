"""``Engine``: one ``HFPolicy`` answering many HTTP threads, concurrent requests batched.

Each HTTP thread ``submit``s a prompt (token ids) with its sampling parameters and waits on the
returned future. One worker thread collects what is pending (while fewer than ``max_batch_size``
wait, it waits for more as long as newcomers arrive within ``batch_wait_s`` of each other, at
most ``10 * batch_wait_s``), takes the oldest request and every pending
request with the same ``SamplingKey`` (adapter, temperature, top-p, top-k, max tokens, stop
tokens, seed), and runs them as one ``model.generate`` through the policy. Requests for different
adapters or sampling parameters never share a batch: a batch samples with one adapter and one
set of parameters, so each request gets exactly what it asked for. Adapter loads and unloads
run between batches.

The log-probabilities are ``HFPolicy``'s: ``log softmax(logits / temperature)`` of each sampled
token, before top-k/top-p truncation (``temperature=0`` decodes greedily, log-probabilities at
temperature 1).

Seeds: one ``model.generate`` samples a whole batch from one random generator, so per-request
seeds (vLLM's) cannot each drive their own row. A batch with seeded requests samples from a
generator seeded with a mix of its requests' seeds: the same requests with the same seeds, batched
the same way, give the same tokens (as a rollout of a fixed seed and concurrency is), and
different seeds give different samples. Seeds do not split batches. A batch without any seed uses
the server's ``--seed`` (``HFPolicy``'s own seeding).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit.policies.hf import HFPolicy, _Pending, _seeded
from envkit.types import Completion

__all__ = ["Engine", "EngineStats", "SamplingKey"]


@dataclass(frozen=True)
class SamplingKey:
    """What a batch shares: requests with equal keys may be sampled together."""

    adapter: str | None
    max_tokens: int
    temperature: float
    top_p: float = 1.0
    top_k: int = 0
    stop_token_ids: tuple[int, ...] = ()


@dataclass
class EngineStats:
    """Counts of what the engine ran (``GET /envkit/stats``)."""

    batches: int = 0
    requests: int = 0
    max_batch: int = 0
    batches_by_adapter: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "requests": self.requests,
            "max_batch": self.max_batch,
            "batches_by_adapter": dict(self.batches_by_adapter),
        }


@dataclass
class _Job:
    prompt_ids: list[int]
    key: SamplingKey
    tools: list[dict[str, Any]] | None
    future: concurrent.futures.Future[Completion]
    seed: int | None = None


class Engine:
    """Batches the requests of many threads onto one ``HFPolicy`` (see the module doc).

    Args:
        policy: The policy to sample with (``engine="padded"``); the engine sets its sampling
            parameters and adapter per batch.
        max_batch_size: Most requests per ``model.generate``.
        batch_wait_s: How long to wait for more requests when fewer than ``max_batch_size`` wait.
    """

    def __init__(
        self, policy: HFPolicy, *, max_batch_size: int = 32, batch_wait_s: float = 0.01
    ) -> None:
        if policy.engine != "padded":
            raise ValueError("envkit serve needs HFPolicy(engine='padded') to switch adapters")
        self.policy = policy
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.default_stops = tuple(policy.stop_token_ids)
        self.default_seed = policy.seed
        self.stats = EngineStats()
        self._cond = threading.Condition()
        self._pending: deque[_Job] = deque()
        self._model_lock = threading.Lock()  # one batch or adapter change at a time
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="envkit-serve-engine", daemon=True)
        self._worker.start()

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
        with self._model_lock:
            self.policy.load_adapter(path, name)

    def unload_adapter(self, name: str) -> None:
        """Deletes adapter ``name`` from the model between batches.

        Raises:
            KeyError: no adapter of that name is loaded.
        """
        with self._model_lock:
            if name not in self.policy.adapters:
                raise KeyError(name)
            model = self.policy.model
            others = [a for a in self.policy.adapters if a != name]
            if not others:  # the last one: back to the plain model (peft removes its layers)
                self.policy.use_adapter(None)
                self.policy.model = model.unload()
                return
            if model.active_adapter == name:
                model.set_adapter(others[0])
            model.delete_adapter(name)

    # ------------------------------------------------------------------ requests

    def submit(
        self,
        prompt_ids: list[int],
        key: SamplingKey,
        tools: list[dict[str, Any]] | None = None,
        seed: int | None = None,
    ) -> concurrent.futures.Future[Completion]:
        """Queues one request; the future gives its ``Completion`` (or the batch's error)."""
        future: concurrent.futures.Future[Completion] = concurrent.futures.Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the engine is closed")
            self._pending.append(_Job(list(prompt_ids), key, tools, future, seed))
            self._cond.notify()
        return future

    def close(self) -> None:
        """Stops the worker; pending requests fail. Idempotent."""
        with self._cond:
            self._closed = True
            jobs = list(self._pending)
            self._pending.clear()
            self._cond.notify()
        for job in jobs:
            job.future.set_exception(RuntimeError("the server is shutting down"))
        self._worker.join(timeout=5)

    def _next_batch(self) -> list[_Job] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            # Let concurrent requests join: wait while newcomers keep arriving within
            # batch_wait_s of each other (at most 10 gaps), or until the batch is full.
            deadline = time.monotonic() + 10 * self.batch_wait_s
            seen = len(self._pending)
            while seen < self.max_batch_size and time.monotonic() < deadline:
                self._cond.wait(timeout=self.batch_wait_s)
                if self._closed:
                    return None
                if len(self._pending) == seen:
                    break
                seen = len(self._pending)
            key = self._pending[0].key
            batch: list[_Job] = []
            rest: deque[_Job] = deque()
            for job in self._pending:
                if job.key == key and len(batch) < self.max_batch_size:
                    batch.append(job)
                else:
                    rest.append(job)
            self._pending = rest
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                results = self._generate(batch)
            except Exception as e:  # the batch's callers get the error; the server lives on
                for job in batch:
                    job.future.set_exception(e)
                continue
            for job, result in zip(batch, results, strict=True):
                job.future.set_result(result)

    def _generate(self, batch: list[_Job]) -> list[Completion]:
        key = batch[0].key
        policy = self.policy
        with self._model_lock:
            policy.use_adapter(key.adapter)
            policy.max_new_tokens = key.max_tokens
            policy.temperature = key.temperature
            policy.top_p, policy.top_k = key.top_p, key.top_k
            policy.stop_token_ids = list(dict.fromkeys(self.default_stops + key.stop_token_ids))
            pending = [_Pending(job.prompt_ids, job.tools, None) for job in batch]  # type: ignore[arg-type]
            seeds = [job.seed for job in batch]
            if all(seed is None for seed in seeds):
                policy.seed = self.default_seed
                context: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
            else:
                policy.seed = None
                mixed = 0
                for seed in seeds:
                    mixed = (mixed * 1_000_003 + (seed if seed is not None else -1)) % 2**61
                device = next(policy.model.parameters()).device
                context = _seeded(mixed, device)
            with context:
                results = policy._generate_batch(pending)
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.max_batch = max(self.stats.max_batch, len(batch))
            name = key.adapter or ""
            self.stats.batches_by_adapter[name] = self.stats.batches_by_adapter.get(name, 0) + 1
        return results
