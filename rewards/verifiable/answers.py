"""Answer-checking rewards: exact match and numeric match against a reference answer.

The reference comes from the ``answer`` keyword: bound with ``Reward.bind(answer=...)``, or
filled from ``Trajectory.reference`` (the task's ``reference``; a TRL dataset column named
``answer`` lands there), never from the env's step ``info``. A missing reference is an error
(recorded, value ``None``), not a 0; so is a ``numeric_match`` reference that is not one number.
The model's answer is read with ``envkit.parsing`` (``extract_answer``, ``parse_number``).

Example:
    >>> from envkit.types import Message, Trajectory
    >>> t = Trajectory(env_id="e", messages=[
    ...     Message(role="user", content="What is 7 * 8?"),
    ...     Message(role="assistant", content="7 * 8 = 56, so the answer is **56**.")])
    >>> numeric_match(t, answer=56), exact_match(t, answer="56")
    (1.0, 1.0)
    >>> numeric_match(t, answer=57)
    0.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from envkit.parsing import as_number, extract_answer, normalize_text, parse_number, submitted_answer
from envkit.rewards.registry import reward
from envkit.types import Trajectory

__all__ = ["exact_match", "numeric_match"]


def _need(answer: object, name: str) -> None:
    if answer is None:
        raise ValueError(
            f"{name} needs the reference answer: bind it (get({name!r}).bind(answer=...)), give "
            "the task a reference (Task(reference=...) -> Trajectory.reference), or pass a TRL "
            "dataset column 'answer'"
        )


@reward(inline=True)
def exact_match(
    trajectory: Trajectory,
    answer: str | Sequence[str] | None = None,
    *,
    ignore_case: bool = True,
    extract: bool = True,
) -> float:
    """1.0 when the final answer equals the reference (or one of several), else 0.0.

    The final answer is extracted from common formats (``\\boxed{}``, ``<answer>``, ``####``,
    "answer is ..."); without one, the whole final response is compared. Markdown emphasis,
    ``$``, quotes, a final period and extra whitespace are ignored.

    Args:
        trajectory: The episode.
        answer: The reference answer, or a list of acceptable answers.
        ignore_case: Compare case-insensitively.
        extract: Extract the final answer first (``False``: compare the whole response).

    Example:
        >>> from envkit.types import Message, Trajectory
        >>> t = Trajectory(env_id="e", messages=[
        ...     Message(role="assistant", content="<answer>Paris</answer>")])
        >>> exact_match(t, answer=["paris", "Paris, France"])
        1.0
    """
    _need(answer, "exact_match")
    text = submitted_answer(trajectory)
    candidate = (extract_answer(text) if extract else None) or text
    refs = [answer] if isinstance(answer, (str, int, float)) else list(answer or [])
    got = normalize_text(candidate, ignore_case=ignore_case)
    return float(any(got == normalize_text(str(r), ignore_case=ignore_case) for r in refs))


@reward(inline=True)
def numeric_match(
    trajectory: Trajectory,
    answer: float | str | None = None,
    *,
    rel_tol: float = 1e-6,
    abs_tol: float = 1e-9,
) -> float:
    """1.0 when the final answer is the reference number (within tolerance), else 0.0.

    The number is read from the extracted final answer (``\\boxed{}``, ``<answer>``, ``####``,
    "answer is ...") or, without one, is the last number of the final response. ``1,234``,
    ``3/4``, ``\\frac{3}{4}`` and ``1e-3`` are understood.

    Args:
        trajectory: The episode.
        answer: The reference number (or a text that is one number: ``"1,234"``, ``"3/4"``).
        rel_tol: Relative tolerance (``math.isclose``).
        abs_tol: Absolute tolerance.

    Raises:
        ValueError: no reference answer, or one that is not a single finite number (``"9 + 4"``
            is not; see ``envkit.parsing.as_number``).

    Example:
        >>> from envkit.types import Message, Trajectory
        >>> t = Trajectory(env_id="e", messages=[
        ...     Message(role="assistant", content="About 3.1416")])
        >>> numeric_match(t, answer=3.14159, rel_tol=1e-4)
        1.0
    """
    _need(answer, "numeric_match")
    ref = as_number(answer)
    if ref is None or not math.isfinite(ref):
        raise ValueError(
            f"numeric_match: the reference answer {answer!r} is not one finite number; "
            "numeric_match does not apply to this task (use exact_match or the env's reward)"
        )
    text = submitted_answer(trajectory)
    extracted = extract_answer(text)
    got = parse_number(extracted) if extracted is not None else None
    if got is None:
        got = parse_number(text)
    if got is None:
        return 0.0
    return float(math.isclose(got, ref, rel_tol=rel_tol, abs_tol=abs_tol))
