"""Test helpers for envs, policies and judges, shipped so that you can test yours offline.

``ScriptedOpenAIServer`` is a real OpenAI-compatible chat-completions server on 127.0.0.1 whose
answers each test scripts: text, tool calls, JSON for judges, HTTP errors, slow replies, or a
callable that answers from the request. It records every request. Point ``LiteLLMPolicy``,
``RulerJudge`` or ``envkit eval --api-base`` at ``server.url``. ``ruler_answer`` and
``ruler_responder`` build answers of a RULER judge. With pytest, import the ``openai_server``
fixture from ``envkit.testing.pytest_plugin``.

Example:
    >>> from envkit.testing import Reply, ScriptedOpenAIServer
    >>> with ScriptedOpenAIServer() as server:
    ...     server.script("4", Reply.fail(429))
    ...     server.url.startswith("http://127.0.0.1:")
    True
"""

from __future__ import annotations

from envkit.testing.judge_answers import ruler_answer, ruler_responder, trajectory_blocks
from envkit.testing.openai_server import ScriptedOpenAIServer
from envkit.testing.replies import (
    RecordedRequest,
    Reply,
    Responder,
    echo,
    tool_call,
)

__all__ = [
    "EnvDoesNotHold",
    "RecordedRequest",
    "Reply",
    "Responder",
    "ScriptedOpenAIServer",
    "assert_env_holds",
    "echo",
    "ruler_answer",
    "ruler_responder",
    "tool_call",
    "trajectory_blocks",
]


def __getattr__(name: str) -> object:
    # assert_env_holds imports the rollout machinery: only when used.
    if name in ("EnvDoesNotHold", "assert_env_holds"):
        from envkit.testing import env_holds

        return getattr(env_holds, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
