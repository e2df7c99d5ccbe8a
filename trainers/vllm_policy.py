"""``VLLMPolicy``: HFPolicy's batching, prompt rendering and tool-call parsing, sampled by vLLM.

Used by ``GRPOTrainer`` when ``GRPOConfig.use_vllm`` is set (CUDA and the ``vllm`` package
required): TRL creates a colocated vLLM engine and pushes the current policy weights (LoRA
merged) into it before every rollout; this policy samples the episodes' turns with it. It is an
``HFPolicy`` that overrides one method, ``sample_batch`` (the sampling backend): requests go
through ``HFPolicy.agenerate_ids`` and its batcher, and each batch is one ``LLM.generate`` call
on token ids, so the sampled token ids are used verbatim in training.

vLLM must return the sampled tokens' log-probabilities (``SamplingParams(logprobs=0)``); when it
returns none, or not for every sampled token, ``sample_batch`` raises ``VLLMLogprobsError``
rather than training on made-up values. The tests drive it with a stand-in for ``vllm.LLM``
(``tests/policies/test_vllm_policy.py``); ``benchmarks/gpu_check.py`` runs it on a real vLLM
engine whenever ``vllm`` is importable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from envkit.policies.hf import HFPolicy, IdsRequest, Sample

__all__ = ["VLLMLogprobsError", "VLLMPolicy"]


class VLLMLogprobsError(RuntimeError):
    """vLLM answered without usable log-probabilities for the sampled tokens."""


class VLLMPolicy(HFPolicy):
    """An ``HFPolicy`` whose batches are sampled by a vLLM ``LLM`` engine.

    Args:
        llm: The ``vllm.LLM`` holding the current policy weights (TRL's colocated engine).
        model: The HF model (for the context length and stop tokens).
        tokenizer: Its tokenizer (chat template).
        **kwargs: ``HFPolicy`` sampling arguments (``max_new_tokens``, ``temperature``, ...).
    """

    def __init__(self, llm: Any, model: Any, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(model, tokenizer, **kwargs)
        self.llm = llm

    def sample_batch(self, requests: Sequence[IdsRequest]) -> list[Sample]:
        """One ``LLM.generate`` on the requests' token ids (see ``HFPolicy.sample_batch``).

        Raises:
            ValueError: a request names an adapter (vLLM holds the merged weights; it has none).
            VLLMLogprobsError: vLLM returned no log-probability for a sampled token.
        """
        from vllm import SamplingParams as VLLMSamplingParams

        params = requests[0].params
        assert params is not None
        if requests[0].adapter is not None:
            raise ValueError(
                f"VLLMPolicy samples with the weights TRL pushed into vLLM and has no adapters; "
                f"got a request for adapter {requests[0].adapter!r}: leave IdsRequest.adapter None"
            )
        shared = {
            "n": 1,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k if params.top_k > 0 else -1,
            "max_tokens": params.max_tokens,
            "stop_token_ids": self.stops_for(params),
            "logprobs": 0,  # the sampled token's own log-probability
        }
        seeds = [r.params.seed if r.params is not None else None for r in requests]
        sampling: Any
        if any(seed is not None for seed in seeds):  # vLLM seeds each request on its own
            sampling = [VLLMSamplingParams(**shared, seed=seed) for seed in seeds]
        else:
            sampling = VLLMSamplingParams(**shared)
        outputs = self.llm.generate(
            [{"prompt_token_ids": list(r.prompt_ids)} for r in requests], sampling, use_tqdm=False
        )
        if len(outputs) != len(requests):
            raise RuntimeError(f"vLLM answered {len(outputs)} of {len(requests)} prompts")
        return [_sample(i, out) for i, out in enumerate(outputs)]


def _sample(index: int, output: Any) -> Sample:
    """The token ids and log-probabilities of one vLLM ``RequestOutput``, checked."""
    sample = output.outputs[0]
    ids = [int(t) for t in sample.token_ids]
    steps = sample.logprobs
    if ids and not steps:
        raise VLLMLogprobsError(
            f"vLLM returned {len(ids)} tokens for prompt {index} but no log-probabilities. "
            "VLLMPolicy asks for them with SamplingParams(logprobs=0) and trains on them; check "
            "that the engine was not started with max_logprobs=0 and that this vLLM version "
            "returns CompletionOutput.logprobs"
        )
    if len(steps or []) != len(ids):
        raise VLLMLogprobsError(
            f"vLLM returned {len(ids)} tokens but {len(steps or [])} log-probability steps for "
            f"prompt {index}"
        )
    logprobs = []
    for position, (token, step) in enumerate(zip(ids, steps or [], strict=True)):
        entry = step.get(token) if step else None
        value = getattr(entry, "logprob", entry)
        if value is None:
            raise VLLMLogprobsError(
                f"vLLM's log-probabilities for prompt {index} lack the sampled token {token} at "
                f"position {position} (it returned {sorted(step or {})[:5]})"
            )
        value = float(value)
        if not math.isfinite(value):
            raise VLLMLogprobsError(
                f"vLLM returned log-probability {value} for the sampled token {token} at "
                f"position {position} of prompt {index}"
            )
        logprobs.append(value)
    return Sample(ids, logprobs)
