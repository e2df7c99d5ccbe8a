"""Small, safe helpers to pull answers out of model text."""

from __future__ import annotations

import re

_INT_RE = re.compile(r"(?<![\w.])[-−]?\d+(?![\w.]*\d)")
_NUM_RE = re.compile(r"[-−]?\d+(?:\.\d+)?")


def last_integer(text: str | None) -> int | None:
    """The last integer written in ``text`` (``"-12"``, ``"= 7."``, ``"\\boxed{42}"``), or None.

    Example:
        >>> last_integer("3 + 4 = 7.")
        7
        >>> last_integer("The answer is -12") is None
        False
        >>> last_integer("no digits here") is None
        True
    """
    if not text:
        return None
    matches = re.findall(r"[-−]?\d+", text.replace(",", ""))
    if not matches:
        return None
    return int(matches[-1].replace("−", "-"))
