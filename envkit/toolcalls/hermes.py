"""Hermes / Qwen2.5 / Qwen3 tool calls: JSON inside ``<tool_call>`` tags.

Models such as Qwen2.5, Qwen3, Hermes and SmolLM2 write a tool call as JSON inside tags::

    Let me add those.
    <tool_call>
    {"name": "add", "arguments": {"a": 1, "b": 2}}
    </tool_call>

Parsing is forgiving the way an RL environment needs: a block may hold a list of calls (SmolLM2's
style), the closing tag may be missing at the end of the text, and ``"parameters"`` is accepted
for ``"arguments"``. Malformed JSON is never dropped silently: when the tool's name can still be
read, the call is kept with its raw arguments text (so the environment answers "invalid JSON
arguments" and the model can learn from it); otherwise the block stays in the content as text.

Example:
    >>> from envkit.toolcalls.hermes import parse_tool_calls
    >>> text = 'Sure.<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>'
    >>> parsed = parse_tool_calls(text)
    >>> parsed.content, parsed.tool_calls[0].function.name, parsed.tool_calls[0].function.arguments
    ('Sure.', 'add', '{"a": 1}')
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from envkit.toolcalls.base import (
    MakeId,
    ParsedToolCalls,
    ToolCallFormat,
    ToolSchemas,
    call_from_json,
    canonical_arguments,
    new_call_id,
    parse_blocks,
    salvage_json_call,
)
from envkit.types import ToolCall

__all__ = ["HermesFormat", "parse_tool_calls"]

OPEN_TAG = "<tool_call>"
CLOSE_TAG = "</tool_call>"

_BLOCK = re.compile(re.escape(OPEN_TAG) + r"(.*?)(?:" + re.escape(CLOSE_TAG) + r"|\Z)", re.S)


def parse_tool_calls(text: str, *, make_id: MakeId = new_call_id) -> ParsedToolCalls:
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
    return parse_blocks(
        text, _BLOCK.finditer(text), lambda block: _parse_block(block.group(1).strip(), make_id)
    )


def _parse_block(body: str, make_id: MakeId) -> tuple[list[ToolCall] | None, int]:
    """The calls of one block (``None``: nothing usable) and whether it was malformed."""
    try:
        data = json.loads(body)
    except ValueError:
        return _salvage(body, make_id)
    items = data if isinstance(data, list) else [data]
    calls = []
    for item in items:
        call = call_from_json(item, make_id)
        if call is None:
            return _salvage(body, make_id)
        calls.append(call)
    return calls, 0


def _salvage(body: str, make_id: MakeId) -> tuple[list[ToolCall] | None, int]:
    call = salvage_json_call(body, make_id)
    return (None if call is None else [call]), 1


class HermesFormat(ToolCallFormat):
    """``<tool_call>{"name": ..., "arguments": ...}</tool_call>``: Qwen2.5, Qwen3, Hermes, SmolLM2.

    Rendering follows Qwen's templates: the content, a newline, then one block per call, blocks
    separated by newlines (what ``<|im_start|>assistant\\n`` is followed by when re-rendered).
    """

    name = "hermes"
    description = "Hermes/Qwen JSON in <tool_call> tags (Qwen2.5, Qwen3, Hermes, SmolLM2)"
    markers = (OPEN_TAG, CLOSE_TAG)

    def matches(self, template: str) -> bool:
        return OPEN_TAG in template

    def _parse(self, text: str, make_id: MakeId, tools: ToolSchemas | None) -> ParsedToolCalls:
        return parse_tool_calls(text, make_id=make_id)

    def render(self, calls: Sequence[ToolCall], content: str = "") -> str:
        blocks = [
            f'{OPEN_TAG}\n{{"name": "{c.function.name}", "arguments": {canonical_arguments(c)}}}'
            f"\n{CLOSE_TAG}"
            for c in calls
        ]
        body = "\n".join(blocks)
        if not calls:
            return content
        return f"{content}\n{body}" if content else body

    def end_of_turn(self, has_calls: bool) -> str | None:
        return "<|im_end|>"
