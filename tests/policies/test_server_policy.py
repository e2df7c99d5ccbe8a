"""``ServerPolicy`` against a vLLM-like HTTP server on 127.0.0.1 (tests/fake_vllm.py): seed
streams, adapter loads (lost answers, names left by an earlier process, servers without runtime
LoRA or with one adapter registry per API process), the neutral sampling fields every request
carries and the check of vLLM's ``--logprobs-mode`` against a local tiny model."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
from fake_vllm import FakeVLLM

from envkit._async import run_sync
from envkit.policies import ServerPolicy
from envkit.policies.server import ServerError
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


# ---------------------------------------------------------------- sampling fields (vLLM defaults)


@pytest.mark.parametrize("render", ["local", "server"])
@pytest.mark.parametrize(("top_k", "sent_top_k"), [(0, -1), (5, 5)])
def test_every_request_sends_the_policy_and_neutral_sampling_fields(
    tiny: Any, render: str, top_k: int, sent_top_k: int
) -> None:
    # vLLM fills a field left out from generation_config.json (repetition_penalty, min_p, ...).
    _, tok = tiny
    with FakeVLLM() as server:
        policy = ServerPolicy(
            server.url,
            "base",
            tokenizer=tok if render == "local" else None,
            temperature=0.7,
            top_p=0.9,
            top_k=top_k,
            max_new_tokens=5,
            max_retries=0,
        )
        run_sync(policy.agenerate(_requests(2)))
        policy.close()
    assert len(server.requests) == 2
    for body in server.requests:
        assert body["temperature"] == 0.7 and body["top_p"] == 0.9
        assert body["top_k"] == sent_top_k and body["max_tokens"] == 5
        assert body["repetition_penalty"] == 1.0 and body["min_p"] == 0.0
        assert body["presence_penalty"] == 0.0 and body["frequency_penalty"] == 0.0


# ---------------------------------------------------------------- adapters on a real vLLM setup


def test_a_name_left_by_an_earlier_process_is_reloaded_from_the_new_path(tmp_path: Path) -> None:
    # envkit train --resume against a server that kept running: the new process loads the same
    # (deterministic) name again; vLLM refuses a registered name with 400.
    old, new = tmp_path / "old", tmp_path / "new"
    with FakeVLLM() as server:
        earlier = ServerPolicy(server.url, "base", max_retries=0)
        earlier.load_adapter(old, "envkit-1-v3")
        resumed = ServerPolicy(server.url, "base", max_retries=0)
        resumed.load_adapter(new, "envkit-1-v3")
        assert resumed.adapters == ["envkit-1-v3"]
        assert server.registries[0] == {"envkit-1-v3": str(new)}, "the old weights stayed"
        assert server.unloads == ["envkit-1-v3"]
        with pytest.raises(ServerError, match="already been loaded"):
            resumed.load_adapter(new, "envkit-1-v3")  # its own name twice: a caller's mistake
        strict = ServerPolicy(server.url, "base", max_retries=0)
        with pytest.raises(ServerError, match="already been loaded"):
            strict.load_adapter(old, "envkit-1-v3", replace_stale=False)
        assert server.registries[0] == {"envkit-1-v3": str(new)}
        for policy in (earlier, resumed, strict):
            policy.close()


@pytest.mark.parametrize("call", ["load", "unload"])
def test_a_server_without_runtime_lora_names_the_flags(tmp_path: Path, call: str) -> None:
    with FakeVLLM(runtime_lora=False) as server:
        policy = ServerPolicy(server.url, "base", max_retries=0)
        with pytest.raises(ServerError, match="HTTP 404") as info:
            if call == "load":
                policy.load_adapter(tmp_path, "v1")
            else:
                policy.unload_adapter("v1")
        policy.close()
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in str(info.value)
    assert "--enable-lora" in str(info.value)


def test_an_unknown_adapter_is_not_blamed_on_the_server_setup() -> None:
    with FakeVLLM() as server:
        policy = ServerPolicy(server.url, "base", max_retries=0)
        with pytest.raises(ServerError, match="cannot be found") as info:
            policy.unload_adapter("ghost")
        policy.use_adapter("never-loaded")
        with pytest.raises(ServerError, match="does not exist") as chat:
            run_sync(policy.agenerate(_requests(1)))
        policy.close()
    for error in (info.value, chat.value):
        assert "VLLM_ALLOW" not in str(error) and "data-parallel" not in str(error)


def test_per_process_adapter_registries_are_named(tmp_path: Path) -> None:
    # vLLM with --data-parallel-size 2: the load reaches one API process, the request another.
    with FakeVLLM(api_servers=2) as server:
        policy = ServerPolicy(server.url, "base", max_retries=0)
        policy.load_adapter(tmp_path, "v1")
        policy.use_adapter("v1")
        with pytest.raises(ServerError, match="does not exist") as info:
            run_sync(policy.agenerate(_requests(1)))
        policy.close()
    assert "--data-parallel-size 1" in str(info.value)
    assert "--api-server-count 1" in str(info.value)


# ---------------------------------------------------------------- log-probabilities mode


@pytest.mark.parametrize(
    ("mode", "temperature", "outcome"),
    [
        ("processed_logprobs", 0.7, "processed"),
        ("raw_logprobs", 0.7, "raw"),
        ("raw_logprobs", 1.0, "not needed"),
        ("raw_logprobs", 0.0, "not needed"),
    ],
)
def test_check_logprobs_detects_a_server_returning_raw_logprobs(
    tiny: Any, mode: str, temperature: float, outcome: str
) -> None:
    model, tok = tiny
    with FakeVLLM(lm=model, logprobs_mode=mode) as server:  # type: ignore[arg-type]
        policy = ServerPolicy(
            server.url, "base", tokenizer=tok, temperature=temperature, max_retries=0
        )
        if outcome == "raw":
            with pytest.raises(ServerError, match="--logprobs-mode processed_logprobs"):
                policy.check_logprobs(model)
        else:
            assert policy.check_logprobs(model) == outcome
        policy.close()
    assert len(server.requests) == (0 if outcome == "not needed" else 1)
    for body in server.requests:  # a clean probe: the base model, no truncation
        assert body["model"] == "base" and body["temperature"] == temperature
        assert body["top_p"] == 1.0 and body["top_k"] == -1


def test_check_logprobs_flags_other_weights(tiny: Any) -> None:
    import copy

    import torch

    model, _ = tiny
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.get_output_embeddings().weight.mul_(3.0)  # sharper logits: other log-probs
    with FakeVLLM(lm=other, logprobs_mode="processed_logprobs") as server:
        policy = ServerPolicy(server.url, "base", temperature=0.7, max_retries=0)  # fixed ids
        with pytest.raises(ServerError, match="match neither"):
            policy.check_logprobs(model)
        policy.close()
