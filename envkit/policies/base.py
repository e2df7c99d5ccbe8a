"""The ``Policy`` protocol: given conversations (and tools), return assistant turns.

A policy is batched and async: ``await policy.agenerate(requests)`` returns one ``Completion`` per
``GenerationRequest``, in order. Rollouts call it with one request per episode and many episodes
in flight; policies that run a local model gather those calls into batches themselves.

Example:
    >>> from envkit.policies import CallablePolicy
    >>> from envkit.types import GenerationRequest, Message
    >>> policy = CallablePolicy(lambda messages, tools: "42")
    >>> request = GenerationRequest(messages=[Message(role="user", content="6*7?")])
    >>> policy.generate([request])[0].message.content
    '42'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from envkit._async import run_sync
from envkit.types import Completion, GenerationRequest, Message

__all__ = ["BasePolicy", "Policy", "as_request"]


@runtime_checkable
class Policy(Protocol):
    """Anything that turns conversations into assistant turns, batched and async."""

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """Returns one assistant ``Completion`` per request, in the same order."""
        ...


def as_request(
    messages: Sequence[Message | Mapping[str, Any]] | GenerationRequest,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> GenerationRequest:
    """Builds a ``GenerationRequest`` from OpenAI-format messages (dicts or ``Message``)."""
    if isinstance(messages, GenerationRequest):
        return messages
    return GenerationRequest(
        messages=[Message.coerce(m) for m in messages],
        tools=[dict(t) for t in tools] if tools else None,
    )


class BasePolicy:
    """Convenience base class: implement ``agenerate``; get ``generate`` and ``__call__``."""

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        raise NotImplementedError(f"{type(self).__name__} must implement agenerate(requests)")

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """Synchronous ``agenerate``."""
        return run_sync(self.agenerate(requests))

    def __call__(
        self,
        messages: Sequence[Message | Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> Completion:
        """Answers one conversation (synchronously)."""
        return self.generate([as_request(messages, tools)])[0]

    async def aclose(self) -> None:
        """Releases resources (HTTP clients, models); the default does nothing."""
