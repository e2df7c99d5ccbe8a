"""``envkit.parsing``: the one home of answer, code and number reading (envs and rewards)."""

from __future__ import annotations

import doctest

import pytest

import envkit.parsing
from envkit.parsing import (
    Answer,
    as_number,
    extract_answer,
    extract_code,
    find_answer,
    last_integer,
    parse_number,
)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(envkit.parsing)
    assert result.attempted >= 20 and result.failed == 0


def test_environments_and_rewards_use_these_functions() -> None:
    """No copies: the envs and the rewards hold the very same function objects."""
    from envkit.environments import arithmetic, countdown, guess_number, python_coding
    from envkit.rewards import verifiable
    from envkit.rewards.verifiable import answers, code

    assert python_coding.extract_code is code.extract_code is verifiable.extract_code
    assert arithmetic.last_integer is guess_number.last_integer is last_integer
    assert arithmetic.extract_answer is answers.extract_answer is verifiable.extract_answer
    assert countdown.find_answer is find_answer
    assert answers.parse_number is verifiable.parse_number is parse_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42),
        ("3 + 4 = 7.", 7),
        ("The answer is -12", -12),
        ("The answer is −12", -12),
        ("\\boxed{42}", 42),
        ("9-3", 3),  # a minus right after a digit is subtraction, not a sign
        ("x-5", 5),
        ("(3)-2", 2),
        ("= -5", -5),
        ("1,234,567", 1234567),
        ("1, 2, 3", 3),
        ("12,34", 34),  # not a thousands separator
        ("7.0", 7),
        ("7.", 7),
        ("3.5", None),
        ("", None),
        (None, None),
        ("no digits", None),
        ("9" * 5000, None),  # too long for int(); never a crash
    ],
)
def test_last_integer(text: str | None, expected: int | None) -> None:
    assert last_integer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42.0),
        ("-3.5", -3.5),
        ("−7", -7.0),
        ("1,234,567", 1234567.0),
        ("1e-3", 0.001),
        ("3/4", 0.75),
        ("\\frac{3}{8}", 0.375),
        ("\\dfrac{1}{4}", 0.25),
        ("first 3 then 5", 5.0),
        ("50%", 50.0),
        ("$12.50", 12.5),
        ("1/0", 0.0),
        ("9-3", 3.0),  # the same sign rule as last_integer
        ("x-5", 5.0),
        ("= -5", -5.0),
        ("12,34", 34.0),
        ("9" * 5000, None),
        ("no digits", None),
        (None, None),
    ],
)
def test_parse_number(text: str | None, expected: float | None) -> None:
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (391, 391.0),
        (2.5, 2.5),
        ("391", 391.0),
        (" **391**. ", 391.0),
        ("$1,234", 1234.0),
        ("-3/4", -0.75),
        ("\\frac{1}{2}", 0.5),
        ("50%", 50.0),
        ("1e-3", 0.001),
        ("9 + 4", None),
        ("(9 + 4)", None),
        ("three hundred ninety-one: 391", None),
        ("2/0", None),
        ("", None),
        (True, None),
        (None, None),
        ([1], None),
    ],
)
def test_as_number_accepts_only_one_number(value: object, expected: float | None) -> None:
    assert as_number(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer>1 + 2</answer>", Answer("1 + 2", "tag")),
        ("<answer>1</answer> then <ANSWER> 2 </ANSWER>", Answer("2", "tag")),
        ("text <answer>3 * 4", Answer("3 * 4", "tag")),  # cut off before the closing tag
        ("so \\boxed{\\frac{1}{2}} done", Answer("\\frac{1}{2}", "boxed")),
        ("\\boxed{3} then finally \\boxed{4}", Answer("4", "boxed")),
        ("\\boxed{unclosed", None),
        ("<answer>tag wins</answer> \\boxed{5}", Answer("tag wins", "tag")),
        ("steps...\n#### 72", Answer("72", "gsm8k")),
        ("The final answer is 12.", Answer("12", "answer_is")),
        ("Answer: **blue**", Answer("blue", "answer_is")),
        ("answer = 7", Answer("7", "answer_is")),
        ("nothing marked\nreally", None),
        ("   \n ", None),
        ("", None),
        (None, None),
    ],
)
def test_find_answer(text: str | None, expected: Answer | None) -> None:
    assert find_answer(text) == expected
    assert extract_answer(text) == (None if expected is None else expected.text)


def test_last_line_is_a_fallback_only_when_asked() -> None:
    assert find_answer("a\n\n b \n") is None
    assert find_answer("a\n\n b \n", last_line=True) == Answer("b", "last_line")
    assert find_answer("<answer>x</answer>\nlast", last_line=True) == Answer("x", "tag")
    assert extract_answer("<sol>5</sol>", tag="sol") == "5"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("```py\nx = 1\n```\ntext\n```python\ny = 2\n```", "y = 2\n"),
        ("```js\nlet x\n```\n```python\ny = 2\n```", "y = 2\n"),
        ("```Python3\nz = 3\n```", "z = 3\n"),
        ("```\nuntagged = 1\n```", "untagged = 1\n"),
        ("def f():\n    return 1", "def f():\n    return 1\n"),
        ("print(1)", "print(1)\n"),
        ("```js\nlet x = 1\n```", None),  # another language is not Python code
        ("I don't know", None),
        ("Paris", None),  # a lone name or number is an answer, not a program
        ("42", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_code_has_one_meaning(text: str | None, expected: str | None) -> None:
    assert extract_code(text) == expected


def test_extract_code_never_raises_on_hostile_text() -> None:
    assert extract_code("(" * 100_000) is None
    assert extract_code("x = 1\n" * 50_000) is None  # too long to be parsed as bare code
