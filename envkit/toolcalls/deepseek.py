"""DeepSeek V3 / R1 / V3.1 tool calls between ``<｜tool▁calls▁begin｜>`` tokens.

Two layouts, both parsed; the template tells which one to render:

* ``"r1"`` (DeepSeek V3, R1 and the R1 distills)::

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>add
    ```json
    {"a": 1}
    ```<｜tool▁call▁end｜><｜tool▁calls▁end｜>

* ``"v3.1"`` (DeepSeek V3.1, V3.2)::

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>add<｜tool▁sep｜>{"a": 1}<｜tool▁call▁end｜>
    <｜tool▁calls▁end｜>

  (one line, no break before the closing token)

DeepSeek's templates concatenate the arguments as text; ``prepare_messages`` serializes them.
R1's template renders a tool-call turn only when its ``content`` is ``None``, and transformers
(5.x) drops ``None`` keys before rendering, so R1's real template loses the calls of every
assistant turn it re-renders: ``envkit check-template`` reports it.

Example:
    >>> from envkit.toolcalls.deepseek import DeepSeekFormat
    >>> from envkit.types import ToolCall
    >>> fmt = DeepSeekFormat("v3.1")
    >>> p = fmt.parse("ok" + fmt.render([ToolCall.create("add", {"a": 1}, id="c")]))
    >>> p.content, p.tool_calls[0].function.name, p.tool_calls[0].function.arguments
    ('ok', 'add', '{"a": 1}')
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from envkit.toolcalls.base import (
    MakeId,
    ParsedToolCalls,
    ToolCallFormat,
    ToolSchemas,
    canonical_arguments,
    json_object_call,
)
from envkit.types import ToolCall

__all__ = ["CALLS_BEGIN", "CALLS_END", "CALL_BEGIN", "CALL_END", "SEP", "DeepSeekFormat"]

CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALLS_END = "<｜tool▁calls▁end｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
CALL_END = "<｜tool▁call▁end｜>"
SEP = "<｜tool▁sep｜>"
END_OF_SENTENCE = "<｜end▁of▁sentence｜>"

_CALL = re.compile(re.escape(CALL_BEGIN) + r"(.*?)(?:" + re.escape(CALL_END) + r"|\Z)", re.S)
_FENCED = re.compile(r"^\s*([^\n]*?)\s*\n```(?:json)?\s*\n?(.*?)\n?```", re.S)

Variant = Literal["r1", "v3.1"]


class DeepSeekFormat(ToolCallFormat):
    """``<｜tool▁calls▁begin｜>...``: DeepSeek V3, R1 (and distills), V3.1.

    Args:
        variant: ``"r1"`` (type, name and a fenced JSON block) or ``"v3.1"`` (name, JSON).
    """

    name = "deepseek"
    description = (
        "DeepSeek <｜tool▁calls▁begin｜> (V3/R1 fenced JSON, or V3.1 name<｜tool▁sep｜>JSON)"
    )
    markers = (CALLS_BEGIN, CALLS_END, CALL_BEGIN, CALL_END, SEP)

    def __init__(self, variant: Variant = "v3.1") -> None:
        if variant not in ("r1", "v3.1"):
            raise ValueError(f"variant must be 'r1' or 'v3.1', got {variant!r}")
        self.variant: Variant = variant
        self.content_with_calls = variant != "r1"

    def matches(self, template: str) -> bool:
        return "tool▁calls▁begin" in template

    def for_template(self, template: str) -> DeepSeekFormat:
        """The variant the template renders."""
        return DeepSeekFormat("r1" if "```json" in template else "v3.1")

    def _parse(self, text: str, make_id: MakeId, tools: ToolSchemas | None) -> ParsedToolCalls:
        if CALL_BEGIN not in text:
            return ParsedToolCalls(content=text)
        cut = text.find(CALLS_BEGIN)
        cut = text.find(CALL_BEGIN) if cut < 0 else cut
        calls: list[ToolCall] = []
        leftover: list[str] = []
        malformed = 0
        for match in _CALL.finditer(text, cut):
            call = _parse_call(match.group(1), make_id)
            if call is None:
                malformed += 1
                leftover.append(match.group(0))
                continue
            calls.append(call[0])
            malformed += call[1]
        content = (text[:cut] + "".join(leftover)).strip()
        return ParsedToolCalls(content=content, tool_calls=calls, malformed=malformed)

    def render(self, calls: Sequence[ToolCall], content: str = "") -> str:
        if not calls:
            return content
        if self.variant == "r1":
            body = "\n".join(
                f"{CALL_BEGIN}function{SEP}{c.function.name}\n```json\n{canonical_arguments(c)}"
                f"\n```{CALL_END}"
                for c in calls
            )
        else:
            body = "".join(
                f"{CALL_BEGIN}{c.function.name}{SEP}{canonical_arguments(c)}{CALL_END}"
                for c in calls
            )
        return f"{content}{CALLS_BEGIN}{body}{CALLS_END}"

    def render_turn(
        self, calls: Sequence[ToolCall], content: str = "", reasoning: str | None = None
    ) -> str:
        """R1 continues a generation prompt that opened ``<think>``; V3.1's default prompt has
        thinking off (``</think>``), so its turns carry no reasoning."""
        body = self.render(calls, content)
        if self.variant == "r1" and reasoning is not None:
            return f"{reasoning}\n</think>\n\n{body}"
        return body

    def end_of_turn(self, has_calls: bool) -> str | None:
        return END_OF_SENTENCE

    def prepare_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = copy.deepcopy(messages)
        for message in out:
            if not message.get("tool_calls"):
                continue
            for call in message["tool_calls"]:
                fn = call.get("function", {})
                if not isinstance(fn.get("arguments"), str):
                    fn["arguments"] = json.dumps(fn.get("arguments", {}), ensure_ascii=False)
        return out

    def __repr__(self) -> str:
        return f"DeepSeekFormat(variant={self.variant!r})"


def _parse_call(body: str, make_id: MakeId) -> tuple[ToolCall, int] | None:
    """One call's body (between the call tokens) and whether it was malformed."""
    if SEP not in body:
        return None
    left, right = body.split(SEP, 1)
    fenced = _FENCED.match(right)
    if fenced is not None:  # r1: type<sep>name\n```json\nargs\n```
        name, raw = fenced.group(1).strip(), fenced.group(2).strip()
    elif left.strip() == "function" and "\n" in right:  # r1 with an unclosed fence
        name, _, raw = right.partition("\n")
        name, raw = name.strip(), raw.replace("```json", "").strip()
    else:  # v3.1: name<sep>args
        name, raw = left.strip(), right.strip()
    if not name:
        return None
    return json_object_call(name, raw, make_id())
