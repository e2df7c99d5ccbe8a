"""Text helpers of the verifiable rewards: the final response, the final answer, numbers.

Example:
    >>> extract_answer("Work: 3 + 4 = 7. So the answer is \\\\boxed{7}.")
    '7'
    >>> parse_number("It costs $1,234.50 in total")
    1234.5
"""

from __future__ import annotations

import re

from envkit.types import Trajectory

__all__ = ["extract_answer", "final_response", "normalize_text", "parse_number"]

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_GSM8K = re.compile(r"####\s*(.+)")
_ANSWER_IS = re.compile(r"(?:final answer|answer)\s*(?:is|:|=)\s*[:\s]*(.+)", re.I)
_NUMBER = re.compile(r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?")
_FRAC = re.compile(r"\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}")


def final_response(trajectory: Trajectory) -> str:
    """The content of the trajectory's last assistant message that has text (``""`` if none)."""
    for message in reversed(trajectory.messages):
        if message.role == "assistant" and message.content:
            return message.content
    return ""


def _last_boxed(text: str) -> str | None:
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, j = 1, i
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[i : j - 1] if depth == 0 else None


def extract_answer(text: str | None) -> str | None:
    """The final answer in ``text``, or ``None`` when it marks none.

    Recognized, in this order: the last ``\\boxed{...}``, the last ``<answer>...</answer>``,
    GSM8K's ``#### 42``, and the last "answer is ..." / "Answer: ..." line.

    Example:
        >>> extract_answer("<answer> Paris </answer>")
        'Paris'
        >>> extract_answer("reasoning...\\n#### 1,200")
        '1,200'
        >>> extract_answer("So the final answer is: **42**.")
        '42'
        >>> extract_answer("no marker here") is None
        True
    """
    if not text:
        return None
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    tags = _ANSWER_TAG.findall(text)
    if tags:
        return tags[-1].strip()
    for pattern in (_GSM8K, _ANSWER_IS):
        found = pattern.findall(text)
        if found:
            return found[-1].strip().strip("*").rstrip(".").strip("*").strip()
    return None


def parse_number(text: str | None) -> float | None:
    """The last number written in ``text`` (``1,234``, ``-5``, ``3.5e2``, ``3/4``, ``\\frac{1}{2}``,
    ``50%`` as 50), or ``None``.

    Example:
        >>> parse_number("x = −12")
        -12.0
        >>> parse_number("\\\\frac{3}{4}")
        0.75
        >>> parse_number("3/4 of it")
        0.75
        >>> parse_number("none") is None
        True
    """
    if not text:
        return None
    text = _FRAC.sub(r"\1/\2", text).replace("−", "-")
    tokens = [m for m in _NUMBER.finditer(text) if any(c.isdigit() for c in m.group())]
    if not tokens:
        return None
    last = tokens[-1]
    value = float(last.group().replace(",", ""))
    # a fraction "a/b": the last number is the denominator right after a slash
    before = text[: last.start()].rstrip()
    if before.endswith("/") and len(tokens) >= 2:
        numerator = tokens[-2]
        if text[numerator.end() : last.start()].strip() == "/" and value != 0:
            return float(numerator.group().replace(",", "")) / value
    return value


def normalize_text(text: str, *, ignore_case: bool = True) -> str:
    """Strips markdown emphasis, ``$``, quotes, a final period and extra whitespace.

    Example:
        >>> normalize_text("  **Paris**. ")
        'paris'
    """
    text = " ".join(text.split())
    text = text.strip().strip("*_`$\"'").strip()
    text = text.rstrip(".").strip().strip("*_`$\"'").strip()
    return text.casefold() if ignore_case else text
