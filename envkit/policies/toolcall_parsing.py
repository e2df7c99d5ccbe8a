"""Parsing tool calls out of a model's text, in the Hermes/Qwen ``<tool_call>`` format.

Models such as Qwen2.5, Hermes and SmolLM2 write a tool call as JSON inside tags::

    Let me add those.
    <tool_call>
    {"name": "add", "arguments": {"a": 1, "b": 2}}
    </tool_call>

``parse_tool_calls`` turns that into OpenAI-format ``ToolCall`` objects (arguments as JSON
text, ids generated) and the text outside the tags. It is forgiving the way an RL environment
needs: a block may hold a list of calls (SmolLM2's style), the closing tag may be missing at the
end of the text, and ``"parameters"`` is accepted for ``"arguments"``. Malformed JSON is never
dropped silently: when the tool's name can still be read, the call is kept with its raw
arguments text (so the environment answers "invalid JSON arguments" and the model can learn from
it); otherwise the block stays in the content as plain text.

Example:
    >>> from envkit.policies.toolcall_parsing import parse_tool_calls
    >>> text = 'Sure.<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>'
    >>> parsed = parse_tool_calls(text)
    >>> parsed.content, parsed.tool_calls[0].function.name, parsed.tool_calls[0].function.arguments
    ('Sure.', 'add', '{"a": 1}')
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from envkit.types import ToolCall

__all__ = ["ParsedToolCalls", "new_call_id", "parse_tool_calls"]

OPEN_TAG = "<tool_call>"
CLOSE_TAG = "</tool_call>"

_BLOCK = re.compile(re.escape(OPEN_TAG) + r"(.*?)(?:" + re.escape(CLOSE_TAG) + r"|\Z)", re.S)
_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_ARGS = re.compile(r'"(?:arguments|parameters)"\s*:\s*', re.S)


def new_call_id() -> str:
    """A fresh OpenAI-style tool-call id (``call_`` + 24 hex digits)."""
    return "call_" + secrets.token_hex(12)


@dataclass
class ParsedToolCalls:
    """The result of :func:`parse_tool_calls`."""

    content: str
    """The text outside the tool-call blocks, stripped when there were blocks (the whole text,
    unchanged, when there were none); malformed blocks without a readable name stay in it."""
    tool_calls: list[ToolCall] = field(default_factory=list)
    malformed: int = 0
    """How many blocks were not valid JSON calls (kept as raw-argument calls or as text)."""


def parse_tool_calls(text: str, *, make_id: Callable[[], str] = new_call_id) -> ParsedToolCalls:
    """Splits a model's text into content and Hermes/Qwen-style tool calls.

    Args:
        text: The decoded assistant turn (special tokens such as ``<|im_end|>`` removed).
        make_id: Produces the id of each call (default: random ``call_...`` ids).

    Returns:
        The content outside the blocks, the calls in order, and the count of malformed blocks.

    Example:
        >>> p = parse_tool_calls('<tool_call>{"name": "f", "arguments": {oops}</tool_call>')
        >>> p.tool_calls[0].function.arguments, p.malformed
        ('{oops}', 1)
    """
    if OPEN_TAG not in text:
        return ParsedToolCalls(content=text)
    calls: list[ToolCall] = []
    kept: list[str] = []
    malformed = 0
    pos = 0
    for match in _BLOCK.finditer(text):
        kept.append(text[pos : match.start()])
        pos = match.end()
        body = match.group(1).strip()
        parsed = _parse_block(body, make_id)
        if parsed is None or parsed[1]:
            malformed += 1
        if parsed is None:
            kept.append(match.group(0))  # no readable name: leave the text for the model to see
        else:
            calls.extend(parsed[0])
    kept.append(text[pos:])
    return ParsedToolCalls(content="".join(kept).strip(), tool_calls=calls, malformed=malformed)


def _parse_block(body: str, make_id: Callable[[], str]) -> tuple[list[ToolCall], bool] | None:
    """The calls of one block and whether it was malformed; ``None``: nothing usable."""
    try:
        data = json.loads(body)
    except ValueError:
        return _salvage(body, make_id)
    items = data if isinstance(data, list) else [data]
    calls = []
    for item in items:
        call = _call_from_json(item, make_id)
        if call is None:
            return _salvage(body, make_id)
        calls.append(call)
    return calls, False


def _call_from_json(item: Any, make_id: Callable[[], str]) -> ToolCall | None:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return None
    args = item.get("arguments", item.get("parameters", {}))
    # a string is already JSON text (OpenAI style); the env validates it
    text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return ToolCall.create(item["name"], text, id=make_id())


def _salvage(body: str, make_id: Callable[[], str]) -> tuple[list[ToolCall], bool] | None:
    """A call with the raw arguments text when at least the name is readable."""
    name = _NAME.search(body)
    if name is None:
        return None
    try:
        fn_name = json.loads(f'"{name.group(1)}"')
    except ValueError:
        fn_name = name.group(1)
    args = _ARGS.search(body)
    raw = body[args.end() :].strip() if args else body
    if args and raw.endswith("}") and raw.count("}") > raw.count("{"):
        raw = raw[:-1].rstrip()  # drop the brace that closed the outer {"name": ..., ...}
    return [ToolCall.create(fn_name, raw, id=make_id())], True
