"""Mistral tool calls: ``[TOOL_CALLS]`` then a JSON list, or ``name[ARGS]{...}`` per call.

Three generations of Mistral's tokenizer write calls differently; the template tells which:

* ``"list"`` (v3: Mistral 7B v0.3, Nemo): ``[TOOL_CALLS][{"name": ..., "arguments": {...},
  "id": "abcDEF123"}]``;
* ``"args"`` (v11: Magistral, Devstral): ``[TOOL_CALLS]name[ARGS]{...}`` per call;
* ``"call_id"`` (v13: Mistral Small 3.2): ``[TOOL_CALLS]name[CALL_ID]abcDEF123[ARGS]{...}``.

Parsing accepts all three and keeps the call ids the model wrote. Mistral's templates reject
call ids that are not 9 alphanumerics, so ``prepare_messages`` maps envkit's ``call_...`` ids
to stable 9-character ones (in the calls and in the tool messages answering them). The
templates drop content next to calls.

Example:
    >>> from envkit.toolcalls.mistral import MistralFormat
    >>> p = MistralFormat().parse('[TOOL_CALLS]add[ARGS]{"a": 1}')
    >>> p.tool_calls[0].function.name, p.tool_calls[0].function.arguments
    ('add', '{"a": 1}')
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
    call_from_json,
    canonical_arguments,
    json_object_call,
    parse_blocks,
    salvage_json_call,
    short_call_id,
)
from envkit.types import ToolCall

__all__ = ["MistralFormat"]

TOOL_CALLS = "[TOOL_CALLS]"
ARGS = "[ARGS]"
CALL_ID = "[CALL_ID]"
_DECODER = json.JSONDecoder()
_SEGMENT = re.compile(re.escape(TOOL_CALLS) + r"(.*?)(?=" + re.escape(TOOL_CALLS) + r"|\Z)", re.S)

Variant = Literal["list", "args", "call_id"]


class MistralFormat(ToolCallFormat):
    """``[TOOL_CALLS]``: Mistral 7B v0.3, Nemo, Small 3.x, Devstral, Magistral.

    Args:
        variant: How calls are rendered (see the module doc); parsing accepts every variant.
    """

    name = "mistral"
    description = "Mistral [TOOL_CALLS] (JSON list, or name[ARGS]{...} per call)"
    markers = (TOOL_CALLS, ARGS, CALL_ID)
    content_with_calls = False

    def __init__(self, variant: Variant = "list") -> None:
        if variant not in ("list", "args", "call_id"):
            raise ValueError(f"variant must be 'list', 'args' or 'call_id', got {variant!r}")
        self.variant: Variant = variant

    def matches(self, template: str) -> bool:
        return TOOL_CALLS in template

    def for_template(self, template: str) -> MistralFormat:
        """The variant the template renders."""
        if CALL_ID in template:
            return MistralFormat("call_id")
        return MistralFormat("args" if ARGS in template else "list")

    def _parse(self, text: str, make_id: MakeId, tools: ToolSchemas | None) -> ParsedToolCalls:
        if TOOL_CALLS not in text:
            return ParsedToolCalls(content=text)
        return parse_blocks(
            text, _SEGMENT.finditer(text), lambda seg: _parse_segment(seg.group(1).strip(), make_id)
        )

    def render(self, calls: Sequence[ToolCall], content: str = "") -> str:
        if not calls:
            return content
        if self.variant == "list":
            items = ", ".join(
                f'{{"name": "{c.function.name}", "arguments": {canonical_arguments(c)}, '
                f'"id": "{short_call_id(c.id)}"}}'
                for c in calls
            )
            return f"{content}{TOOL_CALLS}[{items}]"
        parts = []
        for c in calls:
            call_id = f"{CALL_ID}{short_call_id(c.id)}" if self.variant == "call_id" else ""
            parts.append(f"{TOOL_CALLS}{c.function.name}{call_id}{ARGS}{canonical_arguments(c)}")
        return content + "".join(parts)

    def prepare_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = copy.deepcopy(messages)
        for message in out:
            for call in message.get("tool_calls") or []:
                if isinstance(call.get("id"), str):
                    call["id"] = short_call_id(call["id"])
            if isinstance(message.get("tool_call_id"), str):
                message["tool_call_id"] = short_call_id(message["tool_call_id"])
        return out

    def __repr__(self) -> str:
        return f"MistralFormat(variant={self.variant!r})"


def _parse_segment(segment: str, make_id: MakeId) -> tuple[list[ToolCall] | None, int]:
    """The calls after one ``[TOOL_CALLS]`` (``None``: none) and how many were malformed."""
    if segment.startswith(("[", "{")):
        try:
            data, _ = _DECODER.raw_decode(segment)
        except ValueError:
            call = salvage_json_call(segment, make_id)
            return ([call] if call else None), 1
        items = data if isinstance(data, list) else [data]
        calls = [_with_id(call_from_json(item, make_id), item) for item in items]
        good = [c for c in calls if c is not None]
        return good or None, len(calls) - len(good)
    if ARGS not in segment:
        return None, 1
    head, _, raw = segment.partition(ARGS)
    name, _, written_id = (part.strip() for part in head.partition(CALL_ID))
    if not name:
        return None, 1
    call, bad = json_object_call(name, raw.strip(), written_id or make_id(), _decode_prefix)
    return [call], bad


def _decode_prefix(raw: str) -> Any:
    """The JSON value at the start of ``raw`` (text after it is ignored)."""
    return _DECODER.raw_decode(raw)[0]


def _with_id(call: ToolCall | None, item: Any) -> ToolCall | None:
    """The call with the id the model wrote (``"id"`` in the list form), when it wrote one."""
    written = item.get("id") if isinstance(item, dict) else None
    if call is None or not isinstance(written, str) or not written:
        return call
    return call.model_copy(update={"id": written})
