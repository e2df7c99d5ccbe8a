"""``envkit serve``: an OpenAI-compatible inference server with vLLM's endpoints over ``HFPolicy``.

``InferenceServer`` (``envkit.serving.app``) serves a local transformers model with vLLM's
``/v1/completions``, ``/v1/chat/completions`` (token ids and log-probabilities included) and
runtime LoRA endpoints; ``ServerProcess`` (``envkit.serving.process``) runs ``envkit serve`` in a
subprocess; ``envkit.policies.ServerPolicy`` is the client that samples from it, or from a real
vLLM server. See docs/serving.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["InferenceServer", "ServerProcess"]

_LAZY = {
    "InferenceServer": "envkit.serving.app",
    "ServerProcess": "envkit.serving.process",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'envkit.serving' has no attribute {name!r}")
