"""Safe parsing and exact evaluation of arithmetic expressions (no ``eval``, no ``ast``).

A small recursive-descent parser for the grammar::

    expression := term (("+" | "-") term)*
    term       := factor (("*" | "/") factor)*
    factor     := NUMBER | "(" expression ")"

Only non-negative integer literals, the four binary operators and parentheses are accepted
(``×``, ``÷``, ``−`` and LaTeX's ``\\times``, ``\\cdot``, ``\\div`` are read as operators).
Everything else (names, calls, attribute access, ``**``, ``^``, ``//``, ``%``, decimals, unary
signs, implicit multiplication) is rejected with an ``ExpressionError`` whose message is written
for the model that produced the text. Arithmetic is exact (``fractions.Fraction``), and the input
is bounded in length, nesting depth and digits per number, so no input can make it slow.

Example:
    >>> e = parse_expression("(50 - 25) * 3")
    >>> e.value, e.numbers
    (Fraction(75, 1), (50, 25, 3))
    >>> parse_expression("7 / 2").value
    Fraction(7, 2)
    >>> try:
    ...     parse_expression("__import__('os')")
    ... except ExpressionError as e:
    ...     print(e)
    names such as '__import__' are not allowed; use only numbers, + - * / and parentheses
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "MAX_DEPTH",
    "MAX_DIGITS",
    "MAX_LENGTH",
    "Expression",
    "ExpressionError",
    "parse_expression",
]

MAX_LENGTH = 1000
"""The longest expression text accepted, in characters."""
MAX_DIGITS = 15
"""The most digits one number literal may have."""
MAX_DEPTH = 50
"""The deepest nesting of parentheses accepted."""

_ALIASES = (
    ("\\times", "*"),
    ("\\cdot", "*"),
    ("\\div", "/"),
    ("\\left", ""),
    ("\\right", ""),
    ("×", "*"),
    ("∗", "*"),
    ("·", "*"),
    ("÷", "/"),
    ("−", "-"),
    ("–", "-"),
)
_TOKEN = re.compile(r"\s*(?:([0-9]+)|(\*\*|//|[-+*/()])|([A-Za-z_]\w*)|(\S))")
_ALLOWED = "use only numbers, + - * / and parentheses"
_SPECIAL = {
    "**": "the power operator ** is not allowed",
    "^": "^ (power) is not allowed",
    "//": "// (floor division) is not allowed; use / for exact division",
    "%": "% is not allowed",
    ".": "decimal points and attribute access (.) are not allowed; use whole numbers",
    "=": "= is not allowed inside the expression",
    ",": "commas are not allowed (write numbers without thousands separators)",
}


class ExpressionError(ValueError):
    """The text is not an allowed expression; the message says what is wrong, for the model."""


@dataclass(frozen=True)
class Expression:
    """A parsed expression.

    Attributes:
        text: The expression as it was given (after operator aliases were normalized).
        numbers: The number literals, left to right.
        value: The exact value, or ``None`` if it divides by zero.
        error: Why ``value`` is ``None`` (``"division by zero in (3 - 3)"``), else ``None``.
    """

    text: str
    numbers: tuple[int, ...]
    value: Fraction | None
    error: str | None = None


@dataclass(frozen=True)
class _Token:
    kind: str  # "num", "op", "end"
    text: str
    pos: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # only trailing whitespace is left
            break
        number, op, name, other = m.groups()
        start = m.start(m.lastindex or 0)
        if number is not None:
            if len(number) > MAX_DIGITS:
                raise ExpressionError(
                    f"the number {number[:20]}{'...' if len(number) > 20 else ''} is too large "
                    f"(more than {MAX_DIGITS} digits)"
                )
            tokens.append(_Token("num", number, start))
        elif op is not None:
            if op in _SPECIAL:
                raise ExpressionError(_SPECIAL[op])
            tokens.append(_Token("op", op, start))
        elif name is not None:
            raise ExpressionError(f"names such as {name!r} are not allowed; {_ALLOWED}")
        else:
            if other in _SPECIAL:
                raise ExpressionError(_SPECIAL[other])
            raise ExpressionError(
                f"unexpected character {other!r} at position {start + 1}; {_ALLOWED}"
            )
        pos = m.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.numbers: list[int] = []
        self.error: str | None = None

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def _describe(self, tok: _Token) -> str:
        return "the end of the expression" if tok.kind == "end" else repr(tok.text)

    def parse(self) -> Expression:
        if self.tok.kind == "end":
            raise ExpressionError("the expression is empty")
        value = self.expression()
        if self.tok.kind != "end":  # expression() stops early only at a ')'
            raise ExpressionError(f"unmatched ')' at position {self.tok.pos + 1}")
        return Expression(self.text, tuple(self.numbers), value, self.error)

    def expression(self) -> Fraction | None:
        value = self.term()
        while self.tok.text in ("+", "-"):
            op = self.tok.text
            self.i += 1
            right = self.term()
            if value is not None and right is not None:
                value = value + right if op == "+" else value - right
            else:
                value = None
        tok = self.tok
        if tok.kind == "num" or tok.text == "(":
            previous = self.tokens[self.i - 1].text
            raise ExpressionError(
                f"expected an operator (+ - * /) between {previous!r} and {tok.text!r} at "
                f"position {tok.pos + 1}"
            )
        return value

    def term(self) -> Fraction | None:
        value = self.factor()
        while self.tok.text in ("*", "/"):
            op = self.tok.text
            self.i += 1
            start = self.tok.pos
            right = self.factor()
            if value is None or right is None:
                value = None
            elif op == "*":
                value = value * right
            elif right == 0:
                if self.error is None:
                    last = self.tokens[self.i - 1]
                    divisor = self.text[start : last.pos + len(last.text)]
                    which = "" if last.pos == start else ", which is 0"
                    self.error = f"division by zero (dividing by {divisor}{which})"
                value = None
            else:
                value = value / right
        return value

    def factor(self) -> Fraction | None:
        tok = self.tok
        if tok.kind == "num":
            self.i += 1
            self.numbers.append(int(tok.text))
            return Fraction(int(tok.text))
        if tok.text == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ExpressionError(f"parentheses are nested too deeply (more than {MAX_DEPTH})")
            self.i += 1
            value = self.expression()
            if self.tok.text != ")":
                raise ExpressionError(
                    f"missing ')' for the '(' at position {tok.pos + 1} (found "
                    f"{self._describe(self.tok)} instead)"
                )
            self.i += 1
            self.depth -= 1
            return value
        if tok.text in ("+", "-"):
            raise ExpressionError(
                f"a sign ({tok.text}) at position {tok.pos + 1} has no number before it; unary "
                "+ and - are not allowed, every operator goes between two numbers"
            )
        raise ExpressionError(
            f"expected a number or '(' at position {tok.pos + 1}, found {self._describe(tok)}"
        )


def parse_expression(text: str) -> Expression:
    """Parses and exactly evaluates an arithmetic expression of whole numbers.

    Division by zero does not raise: the result has ``value=None`` and says why in ``error``,
    so a caller can still check which numbers were used.

    Args:
        text: The expression, e.g. ``"(25 - 5) * 4"``.

    Returns:
        The ``Expression`` with its number literals and exact value.

    Raises:
        ExpressionError: the text is not an allowed expression (the message says why).

    Example:
        >>> parse_expression("100 / (3 - 3)").error
        'division by zero (dividing by (3 - 3), which is 0)'
        >>> try:
        ...     parse_expression("2 ** 10")
        ... except ExpressionError as e:
        ...     print(e)
        the power operator ** is not allowed
    """
    if not isinstance(text, str):
        raise TypeError(f"expected the expression as a str, got {type(text).__name__}")
    for alias, op in _ALIASES:
        text = text.replace(alias, op)
    text = text.strip()
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is too long ({len(text)} > {MAX_LENGTH} characters)")
    return _Parser(text).parse()
