"""The serving ``Engine`` in-process: it samples through ``HFPolicy``'s public generation call
(``agenerate_ids`` and its ``sample_batch`` backend), per-request parameters never share a
batch, and closing it fails what is still pending with a clear error.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from envkit.policies.hf import HFPolicy, IdsRequest, Sample, SamplingParams
from envkit.serving.engine import Engine


class Recording(HFPolicy):
    """An ``HFPolicy`` that records each batch its sampling backend gets (then samples it)."""

    def __init__(self, *args: Any, gate: threading.Event | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[list[IdsRequest]] = []
        self.gate = gate

    def sample_batch(self, requests: Any) -> list[Sample]:
        self.batches.append(list(requests))
        if self.gate is not None:
            self.gate.wait(timeout=60)
        return super().sample_batch(requests)


@pytest.fixture
def tiny() -> tuple[Any, Any]:
    from envkit.models import load_model

    return load_model("tiny-random")


def test_engine_batches_through_the_policys_public_call(tiny):
    policy = Recording(*tiny, max_new_tokens=4, seed=0)
    engine = Engine(policy, max_batch_size=8, batch_wait_s=0.05)
    try:
        ids = [1, 2, 3]
        short = SamplingParams(max_tokens=2, temperature=0)
        longer = SamplingParams(max_tokens=4, temperature=0, stop_token_ids=[5])
        requests = [IdsRequest(ids, short if i % 2 else longer) for i in range(6)]
        futures = [engine.submit(r) for r in requests]
        results = [f.result(timeout=120) for f in futures]
    finally:
        engine.close()
    assert [len(c.token_ids or []) for c in results[1::2]] == [2, 2, 2]
    assert all(len(c.token_ids or []) <= 4 for c in results[0::2])
    # each batch holds one parameter set; together they hold every request
    for batch in policy.batches:
        assert len({r.params for r in batch}) == 1
    assert sum(len(b) for b in policy.batches) == 6 and len(policy.batches) < 6
    assert engine.stats is policy.stats and engine.stats.requests == 6


def test_closing_the_engine_fails_pending_requests(tiny):
    gate = threading.Event()
    policy = Recording(*tiny, max_new_tokens=2, gate=gate)
    engine = Engine(policy, batch_wait_s=0)
    running = engine.submit(IdsRequest([1, 2]))
    while not policy.batches:  # the first batch is inside sample_batch, held by the gate
        threading.Event().wait(0.01)
    waiting = engine.submit(IdsRequest([3, 4]))
    closer = threading.Thread(target=engine.close)
    closer.start()
    with pytest.raises(RuntimeError, match="shutting down"):
        waiting.result(timeout=30)
    gate.set()
    closer.join(timeout=30)
    with pytest.raises(RuntimeError, match="shutting down"):
        running.result(timeout=30)
    with pytest.raises(RuntimeError, match="the engine is closed"):
        engine.submit(IdsRequest([1]))
