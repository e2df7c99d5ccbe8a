"""Policies: what produces the assistant's turns.

``Policy`` is the protocol; ``CallablePolicy`` and ``ScriptedPolicy`` run Python code,
``LiteLLMPolicy`` calls any litellm model (OpenAI-compatible servers through ``api_base``),
``HFPolicy`` samples from a local transformers model and ``ServerPolicy`` from an inference
server (vLLM, ``envkit serve``) with token ids and log-probabilities. The last three import their
heavy dependencies only when used.
"""

from __future__ import annotations

from typing import Any

from envkit.policies.base import BasePolicy, Policy, as_request
from envkit.policies.scripted import CallablePolicy, ScriptedPolicy

__all__ = [
    "BasePolicy",
    "CallablePolicy",
    "HFPolicy",
    "LiteLLMPolicy",
    "Policy",
    "ScriptedPolicy",
    "ServerPolicy",
    "as_request",
    "load_policy",
]

_LAZY = {
    "HFPolicy": "envkit.policies.hf",
    "LiteLLMPolicy": "envkit.policies.litellm",
    "ServerPolicy": "envkit.policies.server",
    "load_policy": "envkit.policies.loading",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'envkit.policies' has no attribute {name!r}")
