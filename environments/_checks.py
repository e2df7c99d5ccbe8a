"""Validation of constructor kwargs, with errors that say what was wrong and how to fix it."""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["require_int", "require_range"]


def require_int(name: str, value: Any, minimum: int | None = None) -> int:
    """Returns ``value`` as an ``int``, or raises if it is not a whole number ``>= minimum``.

    Example:
        >>> require_int("max_number", 50, minimum=1)
        50
        >>> require_int("max_number", 0, minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: max_number must be >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def require_range(low_name: str, low: int, high_name: str, high: int) -> None:
    """Raises unless ``low <= high``.

    Example:
        >>> require_range("min_target", 10, "max_target", 5)
        Traceback (most recent call last):
        ...
        ValueError: min_target (10) must be <= max_target (5)
    """
    if low > high:
        raise ValueError(f"{low_name} ({low}) must be <= {high_name} ({high})")
