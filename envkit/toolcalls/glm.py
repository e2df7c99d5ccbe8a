"""GLM-4.5 / 4.6 tool calls: ``<tool_call>name`` with ``<arg_key>``/``<arg_value>`` pairs.

GLM writes, after an (often empty) ``<think></think>`` block::

    <tool_call>add
    <arg_key>a</arg_key>
    <arg_value>1</arg_value>
    </tool_call>

String values are written verbatim, other values as JSON; parsing reads them back (typed by the
tool's schema when ``tools`` are given). A tool-call turn ends with ``<|observation|>``, a text
turn with ``<|user|>``: GLM has no end-of-turn token of its own.

Example:
    >>> from envkit.toolcalls.glm import GLMFormat
    >>> text = "<tool_call>add\\n<arg_key>a</arg_key>\\n<arg_value>1</arg_value>\\n</tool_call>"
    >>> GLMFormat().parse(text).tool_calls[0].function.arguments
    '{"a": 1}'
"""

from __future__ import annotations

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
from envkit.toolcalls.qwen3_coder import wrap_raw_arguments
from envkit.types import ToolCall

__all__ = ["GLMFormat"]

_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.S)
_PAIR = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)(?:</arg_value>|\Z)", re.S)
_NAME = re.compile(r"\s*([^\s<]+)")


def _glm_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class GLMFormat(ToolCallFormat):
    """``<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>``: GLM-4.5/4.6."""

    name = "glm"
    description = "GLM-4.5/4.6 <tool_call>name <arg_key>/<arg_value> pairs"
    markers = (
        "<tool_call>",
        "</tool_call>",
        "<arg_key>",
        "</arg_key>",
        "<arg_value>",
        "</arg_value>",
    )

    def matches(self, template: str) -> bool:
        return "<arg_key>" in template

    def _parse(self, text: str, make_id: MakeId, tools: ToolSchemas | None) -> ParsedToolCalls:
        if "<tool_call>" not in text:
            return ParsedToolCalls(content=text)
        return parse_blocks(
            text, _BLOCK.finditer(text), lambda block: _parse_block(block.group(1), make_id, tools)
        )

    def render(self, calls: Sequence[ToolCall], content: str = "") -> str:
        out = f"\n{content.strip()}" if content.strip() else ""
        for call in calls:
            pairs = "".join(
                f"\n<arg_key>{k}</arg_key>\n<arg_value>{_glm_value(v)}</arg_value>"
                for k, v in (arguments_dict(call) or {}).items()
            )
            out += f"\n<tool_call>{call.function.name}{pairs}\n</tool_call>"
        return out

    def render_turn(
        self, calls: Sequence[ToolCall], content: str = "", reasoning: str | None = None
    ) -> str:
        """GLM always opens its turn with a think block (empty when not reasoning)."""
        return f"\n<think>{(reasoning or '').strip()}</think>" + self.render(calls, content)

    def end_of_turn(self, has_calls: bool) -> str | None:
        return "<|observation|>" if has_calls else "<|user|>"

    def prepare_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return wrap_raw_arguments(messages)


def _parse_block(
    body: str, make_id: MakeId, tools: ToolSchemas | None
) -> tuple[list[ToolCall] | None, int]:
    """The call of one ``<tool_call>`` block (``None``: no name) and whether it was malformed."""
    name = _NAME.match(body)
    if name is None:
        return None, 1
    schemas = parameter_schemas(tools, name.group(1))
    args = {
        k.strip(): convert_value(v.strip("\n"), schemas.get(k.strip()))
        for k, v in _PAIR.findall(body[name.end() :])
    }
    return [ToolCall.create(name.group(1), json.dumps(args, ensure_ascii=False), id=make_id())], 0
