"""What ``ScriptedOpenAIServer`` sends and receives: ``Reply``, ``RecordedRequest``, responders.

A test scripts ``Reply`` objects (or plain strings, or responders: callables that get the
``RecordedRequest`` and return a ``Reply`` or a string). ``echo`` is the default responder.

Example:
    >>> Reply.calling(("add", {"a": 1})).tool_calls[0]["function"]["arguments"]
    '{"a": 1}'
    >>> Reply.fail(503).status, Reply.text("hi").content
    (503, 'hi')
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["RecordedRequest", "Reply", "Responder", "echo", "tool_call"]


def text_of(content: Any) -> str:
    """The text of a message content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def word_count(text: str | None) -> int:
    """How many whitespace-separated words ``text`` has (the server's stand-in for tokens)."""
    return len((text or "").split())


def tool_call(
    name: str, arguments: Mapping[str, Any] | str, *, id: str = "call_0"
) -> dict[str, Any]:
    """One tool call in the OpenAI format (``arguments`` as a dict, or a string sent as is).

    Example:
        >>> tool_call("add", {"a": 1}, id="c1")["function"]
        {'name': 'add', 'arguments': '{"a": 1}'}
    """
    args = arguments if isinstance(arguments, str) else json.dumps(dict(arguments))
    return {"id": id, "type": "function", "function": {"name": name, "arguments": args}}


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a chat completion, or an HTTP error, optionally late.

    Args:
        content: The assistant message's text (``None`` for none, as with tool calls).
        tool_calls: OpenAI-format tool calls (see ``tool_call``), or ``None``.
        finish_reason: Default ``"tool_calls"`` when there are tool calls, else ``"stop"``.
        status: The HTTP status; anything but 200 sends an OpenAI error object.
        error: The error message of a non-200 reply (default ``"scripted failure (HTTP N)"``).
        body: A raw response body (bytes, or a JSON value) sent instead of the built one.
        headers: Extra response headers (``{"retry-after": "1"}``).
        delay_s: Seconds to wait before answering (longer than a client's timeout: it times out).
        prompt_tokens: Reported prompt tokens (default: the server's ``usage`` or a word count).
        completion_tokens: Reported completion tokens (default: likewise).
    """

    content: str | None = None
    tool_calls: Sequence[Mapping[str, Any]] | None = None
    finish_reason: str | None = None
    status: int = 200
    error: str | None = None
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError(f"Reply.status must be an HTTP status (100-599), got {self.status}")
        if self.delay_s < 0:
            raise ValueError(f"Reply.delay_s must be >= 0 seconds, got {self.delay_s}")
        if self.content is not None and not isinstance(self.content, str):
            raise TypeError(
                f"Reply.content must be a string or None, got {type(self.content).__name__}; "
                "use Reply.json(value) to send a JSON value as the message text"
            )

    def delayed(self, seconds: float) -> Reply:
        """This reply, sent ``seconds`` late (e.g. ``echo(request).delayed(0.5)``)."""
        return replace(self, delay_s=seconds)

    @classmethod
    def text(cls, content: str, **options: Any) -> Reply:
        """An assistant message with ``content``; ``options`` are other ``Reply`` fields."""
        return cls(content=content, **options)

    @classmethod
    def json(cls, value: Any, **options: Any) -> Reply:
        """An assistant message whose text is ``value`` as JSON (e.g. a judge's answer).

        Example:
            >>> Reply.json({"scores": []}).content
            '{"scores": []}'
        """
        return cls(content=json.dumps(value), **options)

    @classmethod
    def calling(
        cls, *calls: tuple[str, Mapping[str, Any] | str] | Mapping[str, Any], **options: Any
    ) -> Reply:
        """An assistant message calling tools: ``(name, arguments)`` pairs or ``tool_call`` dicts.

        Pairs get the ids ``call_0``, ``call_1``, ... by position.

        Example:
            >>> r = Reply.calling(("add", {"a": 1, "b": 2}), ("nap", '{"seconds": 1}'))
            >>> [c["id"] for c in r.tool_calls], r.finish_reason or "tool_calls"
            (['call_0', 'call_1'], 'tool_calls')
        """
        built = [
            dict(c) if isinstance(c, Mapping) else tool_call(c[0], c[1], id=f"call_{i}")
            for i, c in enumerate(calls)
        ]
        return cls(tool_calls=built, **options)

    @classmethod
    def fail(
        cls, status: int = 500, error: str | None = None, *, retry_after: float | None = None
    ) -> Reply:
        """An HTTP error (429, 500, 503, 400, ...) with an OpenAI error object.

        Example:
            >>> Reply.fail(429, retry_after=0.5).headers
            {'retry-after': '0.5'}
        """
        if status == 200:
            raise ValueError("Reply.fail needs an error status such as 429 or 500, not 200")
        headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
        return cls(status=status, error=error, headers=headers)


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received.

    Attributes:
        method: ``"POST"`` or ``"GET"``.
        path: The URL path, e.g. ``"/v1/chat/completions"``.
        headers: The request headers, names in lower case.
        raw: The body as text.
        body: The body parsed as a JSON object (``{}`` when it was not one).
    """

    method: str
    path: str
    headers: Mapping[str, str]
    raw: str
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages sent."""
        return list(self.body.get("messages") or [])

    @property
    def user_text(self) -> str:
        """The text of the first user message (``""`` if none)."""
        return next(
            (text_of(m.get("content")) for m in self.messages if m.get("role") == "user"), ""
        )

    @property
    def last_user_text(self) -> str:
        """The text of the last user message (``""`` if none)."""
        users = [m for m in self.messages if m.get("role") == "user"]
        return text_of(users[-1].get("content")) if users else ""

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header (``"Bearer <api key>"``), or ``None``."""
        return self.headers.get("authorization")

    @property
    def trajectories(self) -> dict[str, str]:
        """A RULER judge prompt's trajectory blocks, id -> text (see ``trajectory_blocks``)."""
        from envkit.testing.judge_answers import trajectory_blocks

        return trajectory_blocks(self.user_text)


Responder = Callable[[RecordedRequest], Reply | str]
"""Answers a request: returns a ``Reply`` or the assistant's text."""


def echo(request: RecordedRequest) -> Reply:
    """The default responder: ``"echo: <text of the last user message>"``."""
    return Reply(content=f"echo: {request.last_user_text}")
