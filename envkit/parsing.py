"""Reading answers out of model text: the one home used by environments and rewards alike.

* ``find_answer`` / ``extract_answer``: the final answer a reply marks (``<answer>``,
  ``\\boxed{}``, GSM8K's ``####``, "the answer is ..."), optionally its last line;
* ``extract_code``: the last Python code block (or a reply that is bare Python code);
* ``last_integer``, ``parse_number``, ``as_number``: integers and numbers in text;
* ``final_response``, ``submitted_answer``, ``normalize_text``: the text a reward compares, and
  how.

Every function is pure, bounded and never raises on model text; "nothing found" is ``None``.

Example:
    >>> extract_answer("Work: 3 + 4 = 7. So \\\\boxed{7}.")
    '7'
    >>> find_answer("I think <answer> 3 * 4 </answer>")
    Answer(text='3 * 4', source='tag')
    >>> extract_code("Here:\\n```python\\nx = 1\\n```") , extract_code("I don't know")
    ('x = 1\\n', None)
    >>> parse_number("It costs $1,234.50 in total"), last_integer("9-3 gives 6, so 7.0")
    (1234.5, 7)
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    from envkit.types import Trajectory

__all__ = [
    "Answer",
    "AnswerSource",
    "as_number",
    "extract_answer",
    "extract_code",
    "final_response",
    "find_answer",
    "last_integer",
    "normalize_text",
    "parse_number",
    "submitted_answer",
]

AnswerSource = Literal["tag", "boxed", "gsm8k", "answer_is", "last_line"]
"""Where ``find_answer`` found the answer."""

# A sign counts only where it cannot be a binary minus or a hyphen: not right after a letter,
# digit or ")" ("9-3" holds 9 and 3, "-12" is -12).
_SIGN = r"(?:(?<![\w)])([-+−]))?"
_INTEGER_RE = re.compile(_SIGN + r"(\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.(\d+))?")
_NUMBER_RE = re.compile(
    _SIGN + r"((?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)?(?:\.\d+)?)((?<=\d)[eE][-+]?\d+)?"
)
_FRAC_RE = re.compile(r"\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}")
_EXACT_NUMBER_RE = re.compile(
    r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+|\d*\.\d+|\d+\.\d*)(?:[eE][-+]?\d+)?"
    r"(?:\s*/\s*[-+−]?(?:\d+|\d*\.\d+))?%?"
)
_GSM8K_RE = re.compile(r"####\s*(.+)")
_ANSWER_IS_RE = re.compile(r"(?:final answer|answer)\s*(?:is|:|=)\s*[:\s]*(.+)", re.I)
_FENCE_RE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.S)
_PYTHON_TAGS = ("", "python", "py", "python3")
_MAX_DIGITS = 4000  # Python refuses to convert longer digit strings (int_max_str_digits)
_MAX_CODE_CHARS = 200_000  # bare text longer than this is not parsed as code


class Answer(NamedTuple):
    """An answer found in a reply: its text (stripped) and where it was found."""

    text: str
    source: AnswerSource


def last_integer(text: str | None) -> int | None:
    """The last integer written in ``text`` (``"-12"``, ``"= 7."``, ``"\\boxed{42}"``), or None.

    A minus sign right after a digit, letter or ``)`` is read as subtraction or a hyphen, not
    as a sign; ``1,000`` is one thousand; ``7.0`` is 7. If the last number is not a whole number
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
    for last in _INTEGER_RE.finditer(text):  # noqa: B007 -- only the last match is used
        pass
    if last is None:
        return None
    sign, digits, fraction = last.groups()
    if fraction is not None and fraction.strip("0"):
        return None
    digits = digits.replace(",", "")
    if len(digits) > _MAX_DIGITS:
        return None
    return -int(digits) if sign in ("-", "−") else int(digits)


def _to_float(sign: str | None, digits: str, exponent: str | None) -> float | None:
    digits = digits.replace(",", "")
    if len(digits) > _MAX_DIGITS:
        return None
    try:
        value = float(digits + (exponent or ""))
    except (ValueError, OverflowError):
        return None
    return -value if sign in ("-", "−") else value


def parse_number(text: str | None) -> float | None:
    """The last number written in ``text``, or ``None``.

    Understands ``1,234``, ``-5`` (the same sign rule as ``last_integer``: ``9-3`` ends with 3),
    ``3.5e2``, ``3/4`` and ``\\frac{3}{4}`` (as 0.75), ``50%`` (as 50).

    Example:
        >>> parse_number("x = −12")
        -12.0
        >>> parse_number("\\\\frac{3}{4}")
        0.75
        >>> parse_number("3/4 of it")
        0.75
        >>> parse_number("9-3")
        3.0
        >>> parse_number("none") is None
        True
    """
    if not text:
        return None
    text = _FRAC_RE.sub(r"\1/\2", text)
    tokens = [m for m in _NUMBER_RE.finditer(text) if any(c.isdigit() for c in m.group(2))]
    if not tokens:
        return None
    last = tokens[-1]
    value = _to_float(*last.groups())
    if value is None:
        return None
    # a fraction "a/b": the last number is the denominator right after a slash
    if len(tokens) >= 2 and last.group(1) is None:
        numerator = tokens[-2]
        if text[numerator.end() : last.start()].strip() == "/" and value != 0:
            top = _to_float(*numerator.groups())
            return None if top is None else top / value
    return value


def as_number(value: object) -> float | None:
    """``value`` as a number when it *is* one number (a reference answer), else ``None``.

    Unlike ``parse_number`` it does not pick a number out of prose: ``"391"``, ``" $1,234 "``,
    ``"-3/4"``, ``"\\frac{1}{2}"``, ``"50%"`` and ints/floats are numbers; ``"9 + 4"`` or
    ``"about 3"`` are not.

    Example:
        >>> as_number("1,234"), as_number("\\\\frac{1}{2}"), as_number(7)
        (1234.0, 0.5, 7.0)
        >>> as_number("9 + 4") is None, as_number(True) is None
        (True, True)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    text = _FRAC_RE.sub(r"\1/\2", normalize_text(value))
    if len(text) > 1000 or not _EXACT_NUMBER_RE.fullmatch(text):
        return None
    if "/" in text:
        top, _, bottom = text.partition("/")
        num, den = _signed(top.strip()), _signed(bottom.strip())
        return None if num is None or not den else num / den
    return _signed(text)


def _signed(text: str) -> float | None:
    sign = text[0] if text[0] in "-+−" else None
    body = text.lstrip("-+−").rstrip("%").replace(",", "")
    mantissa, _, exponent = body.lower().partition("e")
    return _to_float(sign, mantissa, f"e{exponent}" if exponent else None)


def _last_boxed(text: str) -> str | None:
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None  # unclosed: no answer there


def _last_tag(text: str, tag: str) -> str | None:
    lower = text.lower()
    start = lower.rfind(f"<{tag}>")
    if start < 0:
        return None
    body_start = start + len(tag) + 2
    end = lower.find(f"</{tag}>", body_start)
    return text[body_start:] if end < 0 else text[body_start:end]


def find_answer(text: str | None, *, tag: str = "answer", last_line: bool = False) -> Answer | None:
    """The final answer a reply marks, and where it was found; ``None`` when it marks none.

    Looked for in this order, the first that is present wins:

    1. the content of the last ``<tag>...</tag>`` (case-insensitive; an unclosed last ``<tag>``
       gives what follows it, as when a reply is cut off);
    2. the content of the last complete ``\\boxed{...}`` (or ``\\fbox{...}``);
    3. GSM8K's ``#### 42``;
    4. the last "answer is ..." / "Answer: ..." / "final answer = ..." line;
    5. with ``last_line=True`` only: the last non-empty line.

    Answers from 3 and 4 lose surrounding ``**`` and a final period.

    Example:
        >>> find_answer("Let me think.\\n<answer> 3 * 4 </answer>")
        Answer(text='3 * 4', source='tag')
        >>> find_answer("so \\\\boxed{(1 + 2) * 3}.").text
        '(1 + 2) * 3'
        >>> find_answer("So the final answer is: **42**.")
        Answer(text='42', source='answer_is')
        >>> find_answer("First line\\n  12 + 7  \\n") is None
        True
        >>> find_answer("First line\\n  12 + 7  \\n", last_line=True)
        Answer(text='12 + 7', source='last_line')
    """
    if not text or not text.strip():
        return None
    tagged = _last_tag(text, tag)
    if tagged is not None:
        return Answer(tagged.strip(), "tag")
    boxed = _last_boxed(text)
    if boxed is not None:
        return Answer(boxed.strip(), "boxed")
    for pattern, source in ((_GSM8K_RE, "gsm8k"), (_ANSWER_IS_RE, "answer_is")):
        found = pattern.findall(text)
        if found:
            cleaned = found[-1].strip().strip("*").rstrip(".").strip("*").strip()
            return Answer(cleaned, source)  # type: ignore[arg-type]
    if last_line:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return Answer(lines[-1], "last_line")
    return None


def extract_answer(text: str | None, *, tag: str = "answer", last_line: bool = False) -> str | None:
    """The text of ``find_answer(text, ...)``, or ``None`` (same rules, without the source).

    Example:
        >>> extract_answer("<answer> Paris </answer>")
        'Paris'
        >>> extract_answer("reasoning...\\n#### 1,200")
        '1,200'
        >>> extract_answer("no marker here") is None
        True
    """
    found = find_answer(text, tag=tag, last_line=last_line)
    return None if found is None else found.text


def _is_bare_code(text: str) -> bool:
    if len(text) > _MAX_CODE_CHARS:
        return False
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    # a lone name or constant ("Paris", "42") is an answer, not a program
    return any(
        not (isinstance(node, ast.Expr) and isinstance(node.value, (ast.Name, ast.Constant)))
        for node in tree.body
    )


def extract_code(text: str | None, language: str = "python") -> str | None:
    """The last fenced code block in ``language`` (or untagged), else bare code, else ``None``.

    ``python`` blocks may be tagged ``python``, ``py`` or ``python3`` (any case); blocks in
    other languages are ignored. A reply without such a block counts as code when the whole of
    it parses as Python (``ast.parse``, nothing runs) and is more than a lone name or constant.

    Example:
        >>> extract_code("```js\\nlet x\\n```\\n```py\\ny = 2\\n```\\ntext\\n```\\nz = 3\\n```")
        'z = 3\\n'
        >>> extract_code("def f():\\n    return 1")
        'def f():\\n    return 1\\n'
        >>> extract_code("```js\\nlet x\\n```") is None, extract_code("Paris") is None
        (True, True)
    """
    if not text:
        return None
    wanted = (language.lower(),) if language.lower() != "python" else _PYTHON_TAGS
    blocks = [body for tag, body in _FENCE_RE.findall(text) if tag.lower() in ("", *wanted)]
    if blocks:
        return blocks[-1]
    stripped = text.strip()
    if language.lower() == "python" and stripped and _is_bare_code(stripped):
        return stripped + "\n"
    return None


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


def final_response(trajectory: Trajectory) -> str:
    """The text of the trajectory's *last* assistant message (``""`` if it has none).

    It never looks back past the final assistant turn: an episode that ends with a tool call
    (``submit(41)``) has no final text, whatever an earlier turn said ("the answer is 42").
    Answer-checking rewards read ``submitted_answer`` instead, which knows about such tools.

    Example:
        >>> from envkit.types import Message, Trajectory
        >>> final_response(Trajectory(env_id="e", messages=[
        ...     Message(role="assistant", content="41"), Message(role="user", content="no")]))
        '41'
    """
    for message in reversed(trajectory.messages):
        if message.role == "assistant":
            return message.content or ""
    return ""


def submitted_answer(trajectory: Trajectory) -> str:
    """The answer the model submitted: what answer-checking rewards compare with the reference.

    An env that takes the answer some other way than the final text (a ``submit`` tool, a
    parsed expression) records what it graded as a string in its step info's ``submitted``;
    that wins, so a reward scores exactly what the env scored. Otherwise it is
    ``final_response``. (Only the env writes step info; the model cannot forge it.)

    Example:
        >>> from envkit.types import Message, Trajectory
        >>> t = Trajectory(env_id="e", info={"submitted": "41"}, messages=[
        ...     Message(role="assistant", content="The answer is 42.")])
        >>> submitted_answer(t), final_response(t)
        ('41', 'The answer is 42.')
    """
    submitted = trajectory.info.get("submitted")
    if isinstance(submitted, str):
        return submitted
    return final_response(trajectory)
