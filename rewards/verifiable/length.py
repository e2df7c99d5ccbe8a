"""``length_penalty``: a negative reward for responses longer than a budget.

Example:
    >>> from envkit.types import Message, Trajectory
    >>> t = Trajectory(env_id="e", messages=[Message(role="assistant", content="word " * 150)])
    >>> length_penalty(t, limit=100, unit="words")
    -0.5
    >>> length_penalty(t, limit=200, unit="words")
    0.0
"""

from __future__ import annotations

from typing import Literal

from envkit.rewards.registry import reward
from envkit.types import Trajectory

__all__ = ["length_penalty"]


@reward(inline=True)
def length_penalty(
    trajectory: Trajectory,
    *,
    limit: int = 2000,
    unit: Literal["chars", "words", "tokens"] = "chars",
) -> float:
    """0 up to ``limit``, then ``-(length - limit) / limit``, floored at -1.

    The length is that of all assistant turns together. Weight it in a ``Rubric`` to trade
    verbosity against the task reward.

    Args:
        trajectory: The episode.
        limit: The free budget (> 0).
        unit: ``"chars"``, ``"words"`` or ``"tokens"`` (the sampled token ids, which local
            policies record; an error when the trajectory has none).

    Raises:
        ValueError: ``limit`` <= 0, an unknown ``unit``, or ``"tokens"`` without token ids.
    """
    if limit <= 0:
        raise ValueError(f"length_penalty: limit must be > 0, got {limit}")
    texts = [m.content or "" for m in trajectory.messages if m.role == "assistant"]
    if unit == "chars":
        length = sum(len(t) for t in texts)
    elif unit == "words":
        length = sum(len(t.split()) for t in texts)
    elif unit == "tokens":
        if not trajectory.completions or any(c.token_ids is None for c in trajectory.completions):
            raise ValueError(
                "length_penalty(unit='tokens') needs token ids on the completions (local "
                "policies record them); use unit='chars' or 'words' for API policies"
            )
        length = sum(len(c.token_ids or []) for c in trajectory.completions)
    else:
        raise ValueError(f"length_penalty: unit must be chars, words or tokens, got {unit!r}")
    return max(-1.0, -max(0, length - limit) / limit)
