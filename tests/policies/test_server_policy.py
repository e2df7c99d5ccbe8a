"""``ServerPolicy`` against a vLLM-like HTTP server on 127.0.0.1: seed streams, adapter loads."""

from __future__ import annotations

import pickle

import pytest
from fake_vllm import FakeVLLM

from envkit._async import run_sync
from envkit.policies import ServerPolicy
from envkit.types import GenerationRequest, Message


def _requests(n: int) -> list[GenerationRequest]:
    return [GenerationRequest(messages=[Message(role="user", content="hi")]) for _ in range(n)]


def test_unpickled_copies_with_their_own_streams_send_distinct_deterministic_seeds() -> None:
    with FakeVLLM() as server:
        policy = ServerPolicy(server.url, "base", seed=7, max_retries=0)
        sent = []
        for stream in (0, 1, 0):  # two actors, then actor 0 again in a fresh copy
            copy = pickle.loads(pickle.dumps(policy))
            copy.set_seed_stream(stream, 0)
            server.requests.clear()
            run_sync(copy.agenerate(_requests(8)))
            sent.append(sorted(r["seed"] for r in server.requests))
            copy.close()
        policy.close()
    assert set(sent[0]).isdisjoint(sent[1]), "two actors sent the same seeds"
    assert sent[0] == sent[2], "one stream must give the same seeds (deterministic in seed)"
    assert len(set(sent[0])) == 8


def test_seed_stream_parts_are_checked() -> None:
    policy = ServerPolicy("http://127.0.0.1:9", "base", seed=1)
    with pytest.raises(ValueError, match="seed stream parts"):
        policy.set_seed_stream(-1)
    policy.close()


def test_load_adapter_whose_answer_was_lost_is_not_loaded_twice(tmp_path) -> None:
    # The first load lands but answers after the client's timeout; a blind retry would POST
    # again (vLLM: 400 "already been loaded", so the trainer would crash; other servers load
    # it twice). The policy must see from /v1/models that it is there.
    with FakeVLLM(load_delay_s=2.0) as server:
        policy = ServerPolicy(server.url, "base", timeout_s=0.5, max_retries=2)
        policy.load_adapter(tmp_path, "v1")
        assert server.loads == ["v1"]
        assert policy.adapters == ["v1"]
        with pytest.raises(Exception, match="already been loaded"):
            policy.load_adapter(tmp_path, "v1")  # a first attempt's refusal still fails
        policy.close()
