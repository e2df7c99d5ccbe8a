"""Small, safe helpers to pull answers out of model text."""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["AnswerSource", "extract_answer", "last_integer"]

# A sign counts only where it cannot be a binary minus or a hyphen: not right after a letter,
# digit or ")" ("9-3" holds 9 and 3, "-12" is -12). Thousands separators must group by three.
_NUMBER_RE = re.compile(r"(?:(?<![\w)])([-−]))?(\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.(\d+))?")
_MAX_DIGITS = 4000  # Python refuses to convert longer digit strings (int_max_str_digits)

AnswerSource = Literal["tag", "boxed", "last_line"]


def last_integer(text: str | None) -> int | None:
    """The last integer written in ``text`` (``"-12"``, ``"= 7."``, ``"\\boxed{42}"``), or None.

    A minus sign right after a digit or letter is read as subtraction or a hyphen, not as a
    sign; ``1,000`` is one thousand; ``7.0`` is 7. If the last number is not a whole number
    (``3.5``), the result is None.

    Example:
        >>> last_integer("3 + 4 = 7.")
        7
        >>> last_integer("The answer is -12")
        -12
        >>> last_integer("9-3 gives 6, so 1,000 or 7.0")
        7
        >>> last_integer("about 3.5") is None
        True
        >>> last_integer("no digits here") is None
        True
    """
    if not text:
        return None
    last = None
    for last in _NUMBER_RE.finditer(text):  # noqa: B007 -- only the last match is used
        pass
    if last is None:
        return None
    sign, digits, fraction = last.groups()
    if fraction is not None and fraction.strip("0"):
        return None
    digits = digits.replace(",", "")
    if len(digits) > _MAX_DIGITS:
        return None
    return -int(digits) if sign else int(digits)


def _last_boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i = start + len("\\boxed{")
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return text[i:]


def extract_answer(text: str | None, tag: str = "answer") -> tuple[str, AnswerSource] | None:
    """The final answer of a reply and where it was found, or None for an empty reply.

    In order: the content of the last ``<tag>...</tag>`` (or what follows an unclosed last
    ``<tag>``), the content of the last ``\\boxed{...}``, or else the last non-empty line.

    Example:
        >>> extract_answer("Let me think.\\n<answer> 3 * 4 </answer>")
        ('3 * 4', 'tag')
        >>> extract_answer("so \\\\boxed{(1 + 2) * 3}.")
        ('(1 + 2) * 3', 'boxed')
        >>> extract_answer("First line\\n  12 + 7  \\n")
        ('12 + 7', 'last_line')
    """
    if not text or not text.strip():
        return None
    open_tag, close_tag = f"<{tag}>", f"</{tag}>"
    lower = text.lower()
    start = lower.rfind(open_tag)
    if start >= 0:
        body_start = start + len(open_tag)
        end = lower.find(close_tag, body_start)
        body = text[body_start:] if end < 0 else text[body_start:end]
        return body.strip(), "tag"
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip(), "boxed"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1], "last_line"
