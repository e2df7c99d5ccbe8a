"""Tool calls as text, for every major model family: parse, render, detect from a chat template.

``detect_format(tokenizer)`` picks the family from the tokenizer's chat template;
``fmt.parse(text)`` turns a decoded assistant turn into OpenAI-format ``ToolCall`` objects;
``fmt.render(calls)`` writes calls the way the model does; ``fmt.prepare_messages(messages)``
adapts message dicts to the family's template. ``check_template`` (and ``envkit check-template``)
verifies that a template keeps multi-turn tool episodes trainable.

Example:
    >>> from envkit.toolcalls import detect_format
    >>> fmt = detect_format("... '<｜tool▁calls▁begin｜>' ... '```json' ...")
    >>> fmt
    DeepSeekFormat(variant='r1')
"""

from __future__ import annotations

from envkit.toolcalls.base import ParsedToolCalls, ToolCallFormat, new_call_id, short_call_id
from envkit.toolcalls.deepseek import DeepSeekFormat
from envkit.toolcalls.detect import FORMATS, chat_template_text, detect_format, get_format
from envkit.toolcalls.glm import GLMFormat
from envkit.toolcalls.hermes import HermesFormat, parse_tool_calls
from envkit.toolcalls.llama3 import Llama3Format
from envkit.toolcalls.mistral import MistralFormat
from envkit.toolcalls.qwen3_coder import Qwen3CoderFormat

__all__ = [
    "FORMATS",
    "DeepSeekFormat",
    "GLMFormat",
    "HermesFormat",
    "Llama3Format",
    "MistralFormat",
    "ParsedToolCalls",
    "Qwen3CoderFormat",
    "ToolCallFormat",
    "chat_template_text",
    "detect_format",
    "get_format",
    "new_call_id",
    "parse_tool_calls",
    "short_call_id",
]
