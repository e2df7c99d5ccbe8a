"""Choosing a tool-call format from a tokenizer's chat template.

``detect_format`` reads the template text and returns the first family whose markers it
contains, in this order: DeepSeek, Mistral, GLM, Qwen3-Coder, Hermes/Qwen, Llama 3 (GLM and
Qwen3-Coder also use ``<tool_call>``, so they come before Hermes). A template that shows none
of them gets the Hermes format, envkit's default (``FormatMatch.detected`` is then ``False``).

Example:
    >>> from envkit.toolcalls import detect_format
    >>> detect_format("{{ '[TOOL_CALLS]' }}").name
    'mistral'
    >>> detect_format("no tool markup here").name
    'hermes'
"""

from __future__ import annotations

from typing import Any

from envkit.toolcalls.base import ToolCallFormat
from envkit.toolcalls.deepseek import DeepSeekFormat
from envkit.toolcalls.glm import GLMFormat
from envkit.toolcalls.hermes import HermesFormat
from envkit.toolcalls.llama3 import Llama3Format
from envkit.toolcalls.mistral import MistralFormat
from envkit.toolcalls.qwen3_coder import Qwen3CoderFormat

__all__ = ["FORMATS", "chat_template_text", "detect_format", "get_format", "matches_template"]

FORMATS: dict[str, ToolCallFormat] = {
    f.name: f
    for f in (
        DeepSeekFormat(),
        MistralFormat(),
        GLMFormat(),
        Qwen3CoderFormat(),
        HermesFormat(),
        Llama3Format(),
    )
}
"""The formats by name, in detection order (their default variants)."""


def chat_template_text(source: Any) -> str:
    """The template text of a tokenizer, a template string or a dict of named templates
    (transformers' multi-template form: ``"tool_use"`` is preferred, then ``"default"``)."""
    template = getattr(source, "chat_template", source)
    if isinstance(template, dict):
        template = (
            template.get("tool_use")
            or template.get("default")
            or "\n".join(str(t) for t in template.values())
        )
    if isinstance(template, list):  # [{"name": ..., "template": ...}] as in tokenizer_config
        named = {t.get("name"): t.get("template", "") for t in template if isinstance(t, dict)}
        return chat_template_text(named)
    return template if isinstance(template, str) else ""


def matches_template(source: Any) -> ToolCallFormat | None:
    """The format a template renders tool calls in, or ``None`` when none matches."""
    text = chat_template_text(source)
    for fmt in FORMATS.values():
        if fmt.matches(text):
            for_template = getattr(fmt, "for_template", None)
            return for_template(text) if for_template else fmt
    return None


def detect_format(source: Any) -> ToolCallFormat:
    """The tool-call format of a tokenizer (or template text); Hermes when none matches.

    Args:
        source: A tokenizer with ``chat_template``, the template text, or a dict of templates.
    """
    return matches_template(source) or FORMATS["hermes"]


def get_format(name: str) -> ToolCallFormat:
    """A format by name (``"hermes"``, ``"llama3"``, ``"mistral"``, ``"qwen3_coder"``,
    ``"glm"``, ``"deepseek"``), in its default variant.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if name not in FORMATS:
        raise ValueError(f"unknown tool-call format {name!r}; known formats: {', '.join(FORMATS)}")
    return FORMATS[name]
