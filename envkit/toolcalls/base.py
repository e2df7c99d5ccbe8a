"""What every tool-call format shares: the parse result, call ids and the ``ToolCallFormat`` API.

A *format* is how one model family writes tool calls in plain text (Hermes/Qwen ``<tool_call>``
JSON, Llama 3 bare JSON, Mistral ``[TOOL_CALLS]``, Qwen3-Coder and GLM XML, DeepSeek's
``<｜tool▁calls▁begin｜>`` tokens). Each format can

* ``parse`` a model's decoded turn into OpenAI-format ``ToolCall`` objects and the remaining text,
* ``render`` calls back into the text the model itself would write (the inverse of ``parse``, and
  what its chat template renders for an assistant turn with ``tool_calls``),
* ``prepare_messages``: adapt OpenAI-format message dicts to what its chat template expects
  (Mistral's 9-character call ids, DeepSeek's JSON-text arguments and ``content: None``).

Example:
    >>> from envkit.toolcalls import get_format
    >>> from envkit.types import ToolCall
    >>> fmt = get_format("llama3")
    >>> text = fmt.render([ToolCall.create("add", {"a": 1}, id="call_0")])
    >>> text
    '{"name": "add", "parameters": {"a": 1}}'
    >>> fmt.parse(text).tool_calls[0].function.arguments
    '{"a": 1}'
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envkit.types import ToolCall

__all__ = [
    "MakeId",
    "ParsedToolCalls",
    "ToolCallFormat",
    "ToolSchemas",
    "arguments_dict",
    "arguments_text",
    "canonical_arguments",
    "convert_value",
    "new_call_id",
    "short_call_id",
]

MakeId = Callable[[], str]
ToolSchemas = Sequence[Mapping[str, Any]]
"""OpenAI tool schemas (``{"type": "function", "function": {...}}`` dicts)."""


def new_call_id() -> str:
    """A fresh OpenAI-style tool-call id (``call_`` + 24 hex digits)."""
    return "call_" + secrets.token_hex(12)


def short_call_id(call_id: str) -> str:
    """A 9-character alphanumeric id for ``call_id`` (Mistral's templates demand that length).

    Ids that already are 9 alphanumerics are kept; others map to a stable hash, so a call and
    the tool message answering it keep matching ids.

    Example:
        >>> short_call_id("abc123XYZ"), short_call_id("call_0") == short_call_id("call_0")
        ('abc123XYZ', True)
    """
    if len(call_id) == 9 and call_id.isalnum() and call_id.isascii():
        return call_id
    return hashlib.sha256(call_id.encode()).hexdigest()[:9]


@dataclass
class ParsedToolCalls:
    """The result of parsing one assistant turn."""

    content: str
    """The text outside the tool-call markup, stripped when there were calls (the whole text,
    unchanged, when there were none); malformed markup without a readable name stays in it."""
    tool_calls: list[ToolCall] = field(default_factory=list)
    malformed: int = 0
    """How many calls were not well-formed (kept with their raw arguments, or left as text)."""


def arguments_text(args: Any) -> str:
    """Arguments as OpenAI JSON text: a string is kept as is (it already is JSON text)."""
    return args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)


def canonical_arguments(call: ToolCall) -> str:
    """A call's arguments as a chat template renders them: ``tojson`` of the decoded object
    (``json.dumps`` with ``ensure_ascii=False``), or the raw text when it is not a JSON object."""
    args = arguments_dict(call)
    return call.function.arguments if args is None else json.dumps(args, ensure_ascii=False)


def arguments_dict(call: ToolCall) -> dict[str, Any] | None:
    """A call's arguments as a dict; ``None`` when they are not a JSON object."""
    try:
        value = json.loads(call.function.arguments)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


_PY_LITERALS = {"True": True, "False": False, "None": None}


def convert_value(raw: str, schema: Mapping[str, Any] | None = None) -> Any:
    """A parameter value written as text (XML formats) as the Python value it stands for.

    With the parameter's JSON schema, ``"string"`` parameters stay text; otherwise the value is
    read as JSON when it parses (numbers, booleans, objects), then as a Python literal written
    by a chat template's ``| string`` (``True``, ``False``, ``None``), else kept as text.

    Example:
        >>> convert_value("3"), convert_value("3", {"type": "string"}), convert_value("True")
        (3, '3', True)
    """
    kind = (schema or {}).get("type")
    if kind == "string":
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        pass
    if raw in _PY_LITERALS:
        return _PY_LITERALS[raw]
    if kind == "boolean" and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return raw


def parameter_schemas(tools: ToolSchemas | None, name: str) -> dict[str, Any]:
    """The ``properties`` of tool ``name`` among OpenAI tool schemas (empty when unknown)."""
    for tool in tools or []:
        fn = tool.get("function", tool)
        if fn.get("name") == name:
            props = (fn.get("parameters") or {}).get("properties") or {}
            return dict(props) if isinstance(props, Mapping) else {}
    return {}


class ToolCallFormat(ABC):
    """How one model family writes tool calls as text (see the module doc).

    Attributes:
        name: Short name (``"hermes"``, ``"llama3"``...), as ``get_format`` takes it.
        description: One line for tables and error messages.
        parallel: Whether the family's template can render several calls in one turn.
        content_with_calls: Whether its template keeps text written next to calls (Llama 3,
            Mistral and DeepSeek R1 drop it, so their models write calls alone).
        markers: The special strings of the format (the tokens a tokenizer should keep whole).
    """

    name: str = ""
    description: str = ""
    parallel: bool = True
    content_with_calls: bool = True
    markers: tuple[str, ...] = ()

    @abstractmethod
    def matches(self, template: str) -> bool:
        """Whether a chat template's text renders tool calls in this format."""

    def parse(
        self, text: str, *, make_id: MakeId = new_call_id, tools: ToolSchemas | None = None
    ) -> ParsedToolCalls:
        """Splits a decoded assistant turn into content and tool calls.

        Args:
            text: The turn as decoded text, special tokens kept (``skip_special_tokens=False``),
                without the end-of-turn token.
            make_id: Produces the id of each call (default: random ``call_...`` ids).
            tools: The OpenAI tool schemas offered (XML formats use them to type values).
        """
        return self._parse(text, make_id, tools)

    @abstractmethod
    def _parse(self, text: str, make_id: MakeId, tools: ToolSchemas | None) -> ParsedToolCalls:
        """``parse`` with every argument given: what each format implements."""

    @abstractmethod
    def render(self, calls: Sequence[ToolCall], content: str = "") -> str:
        """The text the model writes for ``calls`` (after optional ``content``) in this format."""

    def render_turn(
        self, calls: Sequence[ToolCall], content: str = "", reasoning: str | None = None
    ) -> str:
        """The whole turn the model writes after the generation prompt: reasoning (in the
        family's ``<think>`` style, when given), then ``render(calls, content)``."""
        body = self.render(calls, content)
        return body if reasoning is None else f"<think>\n{reasoning}\n</think>\n\n{body}"

    def end_of_turn(self, has_calls: bool) -> str | None:
        """The token the model ends such a turn with; ``None``: the tokenizer's EOS."""
        return None

    def prepare_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Adapts OpenAI-format message dicts (arguments as dicts) to the family's template."""
        return messages

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_ARGS = re.compile(r'"(?:arguments|parameters)"\s*:\s*', re.S)


def call_from_json(item: Any, make_id: MakeId) -> ToolCall | None:
    """A call from a decoded ``{"name": ..., "arguments"|"parameters": ...}`` object."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return None
    args = item.get("arguments", item.get("parameters", {}))
    return ToolCall.create(item["name"], arguments_text(args), id=make_id())


def salvage_json_call(body: str, make_id: MakeId) -> ToolCall | None:
    """A call with the raw arguments text from malformed JSON whose name is still readable."""
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
    return ToolCall.create(fn_name, raw, id=make_id())


def json_object_call(
    name: str, raw: str, call_id: str, decode: Callable[[str], Any] = json.loads
) -> tuple[ToolCall, int]:
    """A call named ``name`` from its arguments text, and 1 when they are not a JSON object
    (the call then keeps the raw text, so the environment can answer "invalid arguments")."""
    try:
        value = decode(raw)
    except ValueError:
        return ToolCall.create(name, raw, id=call_id), 1
    if not isinstance(value, dict):
        return ToolCall.create(name, raw, id=call_id), 1
    return ToolCall.create(name, json.dumps(value, ensure_ascii=False), id=call_id), 0


BlockParser = Callable[[re.Match[str]], tuple[list[ToolCall] | None, int]]
"""Reads one block of tool-call markup: its calls (``None``: leave the block in the content as
text) and how many of them were malformed."""


def parse_blocks(
    text: str, blocks: Iterable[re.Match[str]], parse_block: BlockParser
) -> ParsedToolCalls:
    """Content and calls of ``text`` whose tool-call markup stands in ``blocks`` (in order).

    The content is the text outside the blocks plus the blocks ``parse_block`` could not read
    (``None``), stripped.
    """
    calls: list[ToolCall] = []
    kept: list[str] = []
    malformed = 0
    pos = 0
    for block in blocks:
        kept.append(text[pos : block.start()])
        pos = block.end()
        found, bad = parse_block(block)
        malformed += bad
        if found is None:
            kept.append(block.group(0))  # no readable name: leave the text for the model to see
        else:
            calls.extend(found)
    kept.append(text[pos:])
    return ParsedToolCalls(content="".join(kept).strip(), tool_calls=calls, malformed=malformed)
