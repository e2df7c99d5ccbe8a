"""Llama 3.1 / 3.2 / 3.3 tool calls: the whole turn is JSON ``{"name": ..., "parameters": ...}``.

Meta's templates render an assistant tool call as the bare JSON object (no tags) and ask the
model to answer in that shape; the model may put ``<|python_tag|>`` before it, and Llama 3.2
sometimes writes several calls separated by ``;``. Built-in tools come as
``<|python_tag|>brave_search.call(query="...")``. The templates render one call per turn only
(``parallel = False``) and drop any content next to a call.

Example:
    >>> from envkit.toolcalls.llama3 import Llama3Format
    >>> p = Llama3Format().parse('<|python_tag|>{"name": "add", "parameters": {"a": 1}}')
    >>> p.tool_calls[0].function.name, p.tool_calls[0].function.arguments, p.content
    ('add', '{"a": 1}', '')
"""

from __future__ import annotations

import ast
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
    salvage_json_call,
)
from envkit.types import ToolCall

__all__ = ["Llama3Format"]

PYTHON_TAG = "<|python_tag|>"
_BUILTIN = re.compile(r"^([A-Za-z_]\w*)\.call\((.*)\)\s*$", re.S)
_DECODER = json.JSONDecoder()


class Llama3Format(ToolCallFormat):
    """``{"name": ..., "parameters": {...}}`` (optionally after ``<|python_tag|>``): Llama 3.x."""

    name = "llama3"
    description = 'Llama 3.x JSON {"name", "parameters"} (optionally after <|python_tag|>)'
    parallel = False
    content_with_calls = False
    markers = (PYTHON_TAG,)

    def matches(self, template: str) -> bool:
        return "<|start_header_id|>" in template and (
            PYTHON_TAG in template or '"parameters"' in template
        )

    def _parse(self, text: str, make_id: MakeId, tools: ToolSchemas | None) -> ParsedToolCalls:
        if PYTHON_TAG in text:
            before, _, body = text.partition(PYTHON_TAG)
        elif text.lstrip().startswith("{"):
            before, body = "", text
        else:
            return ParsedToolCalls(content=text)
        body = body.strip()
        builtin = _BUILTIN.match(body)
        if builtin is not None:
            call = _builtin_call(builtin.group(1), builtin.group(2), make_id)
            if call is not None:
                return ParsedToolCalls(content=before.strip(), tool_calls=[call])
        calls, rest, malformed = _json_calls(body, make_id)
        if not calls:
            return ParsedToolCalls(content=text, malformed=malformed)
        content = "\n".join(part for part in (before.strip(), rest.strip()) if part)
        return ParsedToolCalls(content=content, tool_calls=calls, malformed=malformed)

    def render(self, calls: Sequence[ToolCall], content: str = "") -> str:
        if not calls:
            return content
        body = "; ".join(
            f'{{"name": "{c.function.name}", "parameters": {canonical_arguments(c)}}}'
            for c in calls
        )
        return f"{content}{PYTHON_TAG}{body}" if content else body

    def end_of_turn(self, has_calls: bool) -> str | None:
        return "<|eot_id|>"


def _json_calls(body: str, make_id: MakeId) -> tuple[list[ToolCall], str, int]:
    """JSON call objects at the start of ``body`` (``;``-separated); the rest; malformed count."""
    calls: list[ToolCall] = []
    pos = 0
    while True:
        while pos < len(body) and body[pos] in " \t\r\n;":
            pos += 1
        if pos >= len(body) or body[pos] != "{":
            return calls, body[pos:], 0
        try:
            item, end = _DECODER.raw_decode(body, pos)
        except ValueError:
            salvaged = salvage_json_call(body[pos:], make_id)
            if salvaged is None:
                return calls, body[pos:], 1
            return [*calls, salvaged], "", 1
        call = call_from_json(item, make_id)
        if call is None:
            return calls, body[pos:], 0
        calls.append(call)
        pos = end


def _builtin_call(name: str, inner: str, make_id: MakeId) -> ToolCall | None:
    """``brave_search.call(query="x")`` as a call ``brave_search`` with ``{"query": "x"}``."""
    try:
        node = ast.parse(f"f({inner})", mode="eval").body
        if not isinstance(node, ast.Call) or node.args:
            return None
        args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
    except (SyntaxError, ValueError):
        return None
    return ToolCall.create(name, json.dumps(args, ensure_ascii=False), id=make_id())
