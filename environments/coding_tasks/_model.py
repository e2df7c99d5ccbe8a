"""``CodingTask``: one programming task of ``PythonCoding-v0``.

A task is built from its reference solution, a real function in this package (so it is linted and
testable): the function's name, signature and source become the task's, and the statement,
visible examples and hidden tests are written next to it.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from envkit.rewards.verifiable.code import values_equal

__all__ = ["Case", "CodingTask", "outputs_equal", "task"]


class Case(BaseModel):
    """One test: positional arguments (JSON values) and the expected return value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    args: list[Any]
    expected: Any


class CodingTask(BaseModel):
    """A function to implement, with examples shown to the model and tests hidden from it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Stable id: the function's name.")
    function: str = Field(description="Name of the function to implement.")
    signature: str = Field(description="`def name(args) -> ret:` line shown to the model.")
    statement: str = Field(description="What the function must do.")
    examples: list[Case] = Field(description="Visible examples (shown, and checked on submit).")
    hidden: list[Case] = Field(description="Hidden tests: the reward is the fraction passed.")
    reference: str = Field(description="Source of a correct solution.")

    def call_text(self, case: Case) -> str:
        """``name(arg1, arg2)`` as Python text."""
        return f"{self.function}({', '.join(repr(a) for a in case.args)})"


def _jsonish(value: Any) -> Any:
    """Tuples -> lists, recursively: cases are compared as JSON values."""
    if isinstance(value, (list, tuple)):
        return [_jsonish(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonish(v) for k, v in value.items()}
    return value


def task(
    reference: Callable[..., Any],
    statement: str,
    examples: Sequence[tuple[tuple[Any, ...], Any]],
    hidden: Sequence[tuple[tuple[Any, ...], Any]],
) -> CodingTask:
    """Builds a ``CodingTask`` from its reference function and cases ``((args...), expected)``."""
    source = textwrap.dedent(inspect.getsource(reference))
    signature = next(line for line in source.splitlines() if line.startswith("def "))

    def cases(items: Sequence[tuple[tuple[Any, ...], Any]]) -> list[Case]:
        return [Case(args=_jsonish(list(a)), expected=_jsonish(e)) for a, e in items]

    return CodingTask(
        id=reference.__name__,
        function=reference.__name__,
        signature=signature,
        statement=textwrap.dedent(statement).strip(),
        examples=cases(examples),
        hidden=cases(hidden),
        reference=source,
    )


def outputs_equal(got: Any, expected: Any) -> bool:
    """Compares JSON values: floats with a small tolerance, booleans strictly (True is not 1).

    The rule of every code grader: ``envkit.rewards.verifiable.code.values_equal``.

    Example:
        >>> outputs_equal([1, 0.1 + 0.2], [1, 0.3]), outputs_equal(True, 1)
        (True, False)
    """
    return values_equal(got, expected)
