"""Parsing Hermes/Qwen ``<tool_call>`` text: the old import path of ``envkit.toolcalls.hermes``.

Every model family's format (Llama 3, Mistral, Qwen3-Coder, GLM, DeepSeek) lives in
``envkit.toolcalls``; ``HFPolicy`` picks one from the tokenizer's chat template.

Example:
    >>> from envkit.policies.toolcall_parsing import parse_tool_calls
    >>> parsed = parse_tool_calls('<tool_call>{"name": "f", "arguments": {}}</tool_call>')
    >>> parsed.tool_calls[0].id[:5]
    'call_'
"""

from __future__ import annotations

from envkit.toolcalls.base import ParsedToolCalls, new_call_id
from envkit.toolcalls.hermes import parse_tool_calls

__all__ = ["ParsedToolCalls", "new_call_id", "parse_tool_calls"]
