"""``VLLMPolicy`` against a stand-in for ``vllm.LLM``: it samples through ``HFPolicy``'s public
generation call, sends what it should to vLLM and refuses to train on missing log-probabilities.

vLLM needs a CUDA GPU and is not installed here, so these tests replace it, the one place in the
suite where a stand-in is justified: a fake ``vllm`` module (only ``SamplingParams``) is put in
``sys.modules`` and ``FakeLLM`` mimics ``LLM.generate``'s output shape (``RequestOutput.outputs[0]``
with ``token_ids`` and ``logprobs``, a list of ``{token_id: Logprob}`` per sampled token). Its
tokens are the real tiny-random model's greedy choices, with their real log-probabilities, so the
values can be checked against a forward pass. ``benchmarks/gpu_check.py`` runs the real vLLM.
"""

from __future__ import annotations

import math
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pytest

from envkit.policies.hf import IdsRequest, SamplingParams
from envkit.trainers.vllm_policy import VLLMLogprobsError, VLLMPolicy
from envkit.types import GenerationRequest, Message


@dataclass
class FakeSamplingParams:
    """``vllm.SamplingParams``'s fields that ``VLLMPolicy`` sets."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 16
    stop_token_ids: list[int] = field(default_factory=list)
    logprobs: int | None = None
    seed: int | None = None


@dataclass
class Logprob:  # vllm.sequence.Logprob
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:  # vllm.outputs.CompletionOutput (the fields read)
    token_ids: list[int]
    logprobs: list[dict[int, Logprob]] | None


@dataclass
class RequestOutput:  # vllm.outputs.RequestOutput (the fields read)
    outputs: list[CompletionOutput]


class FakeLLM:
    """``LLM.generate`` on token-id prompts: greedy tokens of a real model, real logprobs.

    ``mode``: ``"ok"``; ``"none"`` (``logprobs=None``, what vLLM returns when it was not asked or
    could not compute them); ``"empty"`` (an empty list); ``"wrong_token"`` (the dict lacks the
    sampled token); ``"nan"``.
    """

    def __init__(self, model: Any, mode: str = "ok") -> None:
        self.model = model
        self.mode = mode
        self.calls: list[tuple[list[list[int]], Any]] = []

    def generate(self, prompts: list[dict[str, Any]], params: Any, use_tqdm: bool = True) -> Any:
        import torch

        ids = [p["prompt_token_ids"] for p in prompts]
        self.calls.append((ids, params))
        per_prompt = params if isinstance(params, list) else [params] * len(ids)
        outputs = []
        for prompt, sp in zip(ids, per_prompt, strict=True):
            assert sp.logprobs == 0 and sp.n == 1
            tokens: list[int] = []
            steps: list[dict[int, Logprob]] = []
            with torch.no_grad():
                for _ in range(sp.max_tokens):
                    logits = self.model(torch.tensor([prompt + tokens])).logits[0, -1].float()
                    logp = torch.log_softmax(logits, dim=-1)
                    token = int(logp.argmax())
                    tokens.append(token)
                    steps.append({token: Logprob(logp[token].item(), rank=1)})
                    if token in sp.stop_token_ids:
                        break
            if self.mode == "wrong_token":
                steps[-1] = {tokens[-1] + 1: Logprob(-1.0)}
            if self.mode == "nan":
                steps[0] = {tokens[0]: Logprob(math.nan)}
            logprobs = {"ok": steps, "none": None, "empty": []}.get(self.mode, steps)
            outputs.append(RequestOutput([CompletionOutput(tokens, logprobs)]))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("vllm")
    module.SamplingParams = FakeSamplingParams  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)


def request(text: str) -> GenerationRequest:
    return GenerationRequest(messages=[Message(role="user", content=text)])


def rescore(model: Any, prompt: list[int], tokens: list[int]) -> list[float]:
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([prompt + tokens])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return [logp[len(prompt) - 1 + i, t].item() for i, t in enumerate(tokens)]


def test_samples_through_the_public_call_with_vllms_ids_and_logprobs(tiny, fake_vllm):
    model, tok = tiny
    llm = FakeLLM(model)
    policy = VLLMPolicy(llm, model, tok, max_new_tokens=5, temperature=1.0, top_k=0)
    completions = policy.generate([request("hi"), request("a longer question?")])
    [(prompts, params)] = llm.calls  # both episodes in one LLM.generate
    assert prompts == [c.prompt_token_ids for c in completions]
    assert prompts[0] == policy.render(request("hi"))
    assert params.max_tokens == 5 and params.top_k == -1 and params.temperature == 1.0
    assert set(policy.stop_token_ids) <= set(params.stop_token_ids)
    for c in completions:
        assert 1 <= len(c.token_ids) == len(c.logprobs) <= 5
        assert c.logprobs == pytest.approx(
            rescore(model, c.prompt_token_ids, c.token_ids), abs=1e-4
        )
        assert all(lp < 0 for lp in c.logprobs)
    assert policy.stats.batches == 1 and policy.stats.requests == 2


def test_per_request_parameters_and_seeds_reach_vllm(tiny, fake_vllm):
    model, tok = tiny
    llm = FakeLLM(model)
    policy = VLLMPolicy(llm, model, tok, max_new_tokens=4)
    ids = policy.render(request("x"))
    params = SamplingParams(max_tokens=3, temperature=0.5, top_k=7, stop_token_ids=[11])
    seeded = SamplingParams(max_tokens=3, temperature=0.5, top_k=7, stop_token_ids=[11], seed=9)
    policy.generate_ids([IdsRequest(ids, params), IdsRequest(ids, seeded)])
    [(_, sent)] = llm.calls  # the seed does not split the batch: one SamplingParams per prompt
    assert [p.seed for p in sent] == [None, 9]
    assert all(p.max_tokens == 3 and p.top_k == 7 and 11 in p.stop_token_ids for p in sent)


@pytest.mark.parametrize(
    ("mode", "match"),
    [
        ("none", "no log-probabilities"),
        ("empty", "no log-probabilities"),
        ("wrong_token", "lack the sampled token"),
        ("nan", "log-probability nan"),
    ],
)
def test_missing_logprobs_raise_instead_of_training_on_zeros(tiny, fake_vllm, mode, match):
    """Before issue 17, ``logprobs=None`` became ``[0.0] * len(ids)``: trained on made-up values."""
    model, tok = tiny
    policy = VLLMPolicy(FakeLLM(model, mode=mode), model, tok, max_new_tokens=3)
    with pytest.raises(VLLMLogprobsError, match=match):
        policy.generate([request("hi")])
