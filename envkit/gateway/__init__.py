"""The capture gateway: an OpenAI-compatible proxy that records what the model saw and sampled.

An agent written against any OpenAI-compatible client points its ``base_url`` at a session URL
(``http://127.0.0.1:PORT/s/<session>/v1``); the gateway answers ``/v1/chat/completions`` and
``/v1/responses`` from an upstream that reports token ids (an in-process ``HFPolicy``,
``envkit serve``, vLLM) and records every call (``envkit.gateway.records``). Calls of a session
are linked into training sequences by token prefix (``envkit.gateway.linking``). See
docs/agents.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CallRecord", "Gateway", "PolicyUpstream", "Session", "SessionLog", "read_session"]

_LAZY = {
    "CallRecord": "envkit.gateway.records",
    "Gateway": "envkit.gateway.server",
    "PolicyUpstream": "envkit.gateway.upstream",
    "Session": "envkit.gateway.server",
    "SessionLog": "envkit.gateway.records",
    "read_session": "envkit.gateway.records",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'envkit.gateway' has no attribute {name!r}")
