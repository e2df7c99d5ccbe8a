"""Qwen3-Coder tool calls: XML ``<function=name>`` with ``<parameter=key>`` values.

Qwen3-Coder (and Qwen3.5-style templates) write::

    <tool_call>
    <function=add>
    <parameter=a>
    1
    </parameter>
    </function>
    </tool_call>

Values are text: strings verbatim, objects and lists as JSON, other scalars as Jinja's
``| string`` writes them (``True``, ``1.5``). Parsing turns them back into JSON values, typed by
the tool's schema when ``tools`` are given (a ``"string"`` parameter stays text).

Example:
    >>> from envkit.toolcalls.qwen3_coder import Qwen3CoderFormat
    >>> text = "<tool_call><function=add><parameter=a>\\n1\\n</parameter></function></tool_call>"
    >>> Qwen3CoderFormat().parse(text).tool_calls[0].function.arguments
    '{"a": 1}'
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from typing import Any

from envkit.toolcalls.base import (
    MakeId,
    ParsedToolCalls,
    ToolCallFormat,
    ToolSchemas,
    arguments_dict,
    convert_value,
    parameter_schemas,
    parse_blocks,
)
from envkit.types import ToolCall

__all__ = ["Qwen3CoderFormat", "template_value"]

_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.S)
_FUNCTION = re.compile(r"<function=([^>\n]+)>(.*?)(?:</function>|\Z)", re.S)
_PARAM = re.compile(
    r"<parameter=([^>\n]+)>(.*?)(?:</parameter>|(?=<parameter=)|(?=</function>)|\Z)", re.S
)


def template_value(value: Any) -> str:
    """A value as XML-style templates write it: JSON for objects/lists, ``str`` otherwise."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _strip_one_newline(raw: str) -> str:
    raw = raw[1:] if raw.startswith("\n") else raw
    return raw[:-1] if raw.endswith("\n") else raw


class Qwen3CoderFormat(ToolCallFormat):
    """``<tool_call><function=name><parameter=key>value</parameter>...``: Qwen3-Coder."""

    name = "qwen3_coder"
    description = "Qwen3-Coder XML <tool_call><function=name><parameter=key>..."
    markers = ("<tool_call>", "</tool_call>")

    def matches(self, template: str) -> bool:
        return "<function=" in template and "<parameter=" in template

    def _parse(self, text: str, make_id: MakeId, tools: ToolSchemas | None) -> ParsedToolCalls:
        if "<tool_call>" not in text and "<function=" not in text:
            return ParsedToolCalls(content=text)
        blocks = list(_BLOCK.finditer(text)) or list(_FUNCTION.finditer(text))
        return parse_blocks(text, blocks, lambda b: _parse_block(b.group(0), make_id, tools))

    def render(self, calls: Sequence[ToolCall], content: str = "") -> str:
        if not calls:
            return content
        blocks = []
        for call in calls:
            args = arguments_dict(call) or {}
            params = "".join(
                f"<parameter={k}>\n{template_value(v)}\n</parameter>\n" for k, v in args.items()
            )
            blocks.append(
                f"<tool_call>\n<function={call.function.name}>\n{params}</function>\n</tool_call>"
            )
        body = "\n".join(blocks)
        return f"{content.strip()}\n\n{body}" if content.strip() else body

    def end_of_turn(self, has_calls: bool) -> str | None:
        return "<|im_end|>"

    def prepare_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return wrap_raw_arguments(messages)


def _parse_block(
    block: str, make_id: MakeId, tools: ToolSchemas | None
) -> tuple[list[ToolCall] | None, int]:
    """The calls of one block's ``<function=...>`` elements (``None``: there are none)."""
    found = list(_FUNCTION.finditer(block))
    if not found:
        return None, 1
    calls = []
    for fn in found:
        name = fn.group(1).strip()
        schemas = parameter_schemas(tools, name)
        args = {
            p.group(1).strip(): convert_value(
                _strip_one_newline(p.group(2)), schemas.get(p.group(1).strip())
            )
            for p in _PARAM.finditer(fn.group(2))
        }
        calls.append(ToolCall.create(name, json.dumps(args, ensure_ascii=False), id=make_id()))
    return calls, 0


def wrap_raw_arguments(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calls whose arguments are not a JSON object (malformed model output) get
    ``{"raw_arguments": text}``: XML templates iterate over the arguments' items."""
    if not any(
        isinstance(c.get("function", {}).get("arguments"), str)
        for m in messages
        for c in m.get("tool_calls") or []
    ):
        return messages
    out = copy.deepcopy(messages)
    for message in out:
        for call in message.get("tool_calls") or []:
            fn = call.get("function", {})
            if isinstance(fn.get("arguments"), str):
                fn["arguments"] = {"raw_arguments": fn["arguments"]}
    return out
