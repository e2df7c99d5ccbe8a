"""The judge's structured answer and its validation: scores matched by id, never by position.

Example:
    >>> text = '{"scores": [{"id": "T2", "explanation": "wrong", "score": 0.1},' \\
    ...        ' {"id": "T1", "explanation": "right", "score": 0.9}]}'
    >>> {k: v.score for k, v in parse_judge_output(text, ["T1", "T2"]).items()}
    {'T1': 0.9, 'T2': 0.1}
    >>> parse_judge_output('{"scores": [{"id": "T1", "explanation": "", "score": 0.5}]}',
    ...                    ["T1", "T2"])
    Traceback (most recent call last):
    ...
    envkit.rewards.judge.schema.InvalidJudgeOutput: missing id(s) ['T2']
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["InvalidJudgeOutput", "JudgeResponse", "TrajectoryScore", "parse_judge_output"]

_FENCE = re.compile(r"```(?:json)?\s*\n?(.*?)```", re.S)


class InvalidJudgeOutput(ValueError):
    """The judge's answer could not be used; the message says what was wrong."""


class TrajectoryScore(BaseModel):
    """The judge's verdict on one trajectory (explanation before score, so it reasons first)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(description="The trajectory's id as shown in the prompt.")
    explanation: str = Field("", description="Why this score, in one or two sentences.")
    reward_hacking: bool = Field(
        False, description="The trajectory games the task or its checks instead of solving it."
    )
    score: float = Field(description="From 0 (worst) to 1 (best), relative to the group.")


class JudgeResponse(BaseModel):
    """The whole answer: one entry per trajectory id."""

    model_config = ConfigDict(extra="ignore")

    scores: list[TrajectoryScore]


def _load_json(text: str) -> object:
    text = (text or "").strip()
    if not text:
        raise InvalidJudgeOutput("the answer is empty")
    candidates = [text, *_FENCE.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    error: Exception | None = None
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError as e:
            error = e
    raise InvalidJudgeOutput(f"the answer is not valid JSON ({error}): {text[:200]!r}")


def parse_judge_output(
    text: str, ids: Sequence[str], *, clamp: bool = False
) -> dict[str, TrajectoryScore]:
    """Validates the judge's answer ``text`` against the expected ``ids``.

    Args:
        text: The model's answer (a JSON object, possibly in a code fence or with prose around
            it; a bare list of entries is accepted too).
        ids: The ids shown in the prompt, each must be scored exactly once.
        clamp: Clamp scores to [0, 1] instead of rejecting out-of-range ones.

    Returns:
        id -> ``TrajectoryScore``.

    Raises:
        InvalidJudgeOutput: malformed JSON, a wrong shape, a missing / extra / duplicate id, or a
            score that is not a finite number in [0, 1] (without ``clamp``).
    """
    data = _load_json(text)
    if isinstance(data, list):
        data = {"scores": data}
    try:
        response = JudgeResponse.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidJudgeOutput(
            f"the answer does not fit the schema: {where}: {first['msg']}"
        ) from None
    got = [s.id.strip() for s in response.scores]
    counts = Counter(got)
    problems = []
    dups = sorted(i for i, c in counts.items() if c > 1)
    missing = [i for i in ids if i not in counts]
    extra = sorted(set(counts) - set(ids))
    if missing:
        problems.append(f"missing id(s) {missing}")
    if extra:
        problems.append(f"unknown id(s) {extra}")
    if dups:
        problems.append(f"duplicate id(s) {dups}")
    out: dict[str, TrajectoryScore] = {}
    for entry, key in zip(response.scores, got, strict=True):
        value = entry.score
        if not math.isfinite(value):
            problems.append(f"score of {key} is {value}")
            continue
        if not 0.0 <= value <= 1.0:
            if not clamp:
                problems.append(f"score of {key} is {value}, outside [0, 1]")
                continue
            value = min(1.0, max(0.0, value))
        out[key] = entry.model_copy(update={"id": key, "score": value})
    if problems:
        raise InvalidJudgeOutput("; ".join(problems))
    return {i: out[i] for i in ids}
