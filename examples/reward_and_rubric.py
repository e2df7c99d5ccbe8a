"""Rewards and a rubric: score rollouts after the fact, with a breakdown per component.

Shows: a registered per-trajectory reward (``@reward``) that reads the task's reference answer
(``answer=``) and the env's step info; a group reward (one value per trajectory, relative to the
group); bundled verifiable rewards bound to options (``get(...).bind``); a weighted ``Rubric``
of them, scored with ``score_groups``; and how a reward that cannot be computed is recorded as
unknown (``None`` plus the error), never a silent 0.

Run:
    python examples/reward_and_rubric.py
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import envkit
from envkit.parsing import final_response, last_integer
from envkit.policies import CallablePolicy
from envkit.rewards import Rubric, get, reward, score_groups
from envkit.types import Trajectory, TrajectoryGroup


@reward(name="example/correct", inline=True)
def correct(trajectory: Trajectory, answer: Any = None) -> float:
    """1.0 when the last integer of the final reply is the reference answer."""
    if answer is None:
        raise ValueError("example/correct needs a reference answer")
    return float(last_integer(final_response(trajectory)) == int(answer))


@reward(name="example/shortest", group=True)
def shortest(group: TrajectoryGroup) -> list[float]:
    """A group reward: 1.0 for the shortest reply(s) of the group, 0.0 for the others."""
    lengths = [len(final_response(t)) for t in group]
    return [float(n == min(lengths)) for n in lengths]


SEEN: Counter[str] = Counter()


def replies(messages: list[dict[str, Any]], tools: Any) -> str:
    """The first reply to a question is right but wordy; the second is a bare number, right
    when the first operand is even."""
    question = messages[-1]["content"]  # "What is A + B? ..."
    a, b = (int(x) for x in question.split("?")[0].split()[2::2])
    SEEN[question] += 1
    if SEEN[question] == 1:
        return f"Let me think step by step. {a} plus {b} makes {a + b}. The answer is {a + b}."
    return str(a + b) if a % 2 == 0 else str(a + b + 1)


def main() -> None:
    groups = envkit.collect(
        "Arithmetic-v0",
        CallablePolicy(replies),
        seeds=range(6),
        group_size=2,
        env_kwargs={"operators": "+", "max_turns": 1},
        progress=False,
    )
    rubric = Rubric(
        [
            ("example/correct", 1.0),
            ("example/shortest", 0.2),
            (get("regex_match").bind(pattern=r"^\d+$").with_name("bare_number"), 0.1),
        ]
    )
    report = score_groups(groups, rubric)
    print(f"report: {report}")
    for t in groups[0]:
        print(f"reply {final_response(t)!r}")
        print(f"  reward {t.reward:.2f} = {t.reward_breakdown} (reference {t.reference})")
    print(f"mean reward: {sum(t.reward for g in groups for t in g) / 12:.3f}")

    # No reference answer: the reward is unknown (None) and the error is kept, not a 0.
    lone = Trajectory(env_id="x", messages=[{"role": "assistant", "content": "42"}])
    score_groups([TrajectoryGroup(env_id="x", trajectories=[lone])], "example/correct")
    print(f"without a reference: reward={lone.reward} errors={lone.metrics.get('reward_errors')}")


if __name__ == "__main__":
    main()
