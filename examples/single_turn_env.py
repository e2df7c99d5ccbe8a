"""A single-turn environment: one question, one answer, reward 1 or 0.

Shows: subclassing ``envkit.ChatEnv`` (``make_task`` + ``respond``), registering it, the
Gymnasium API (``reset``/``step``), and a batch of rollouts with a Python-function policy,
summarized (mean reward, pass@k). No model, no network.

Run:
    python examples/single_turn_env.py
"""

from __future__ import annotations

from typing import Any

import envkit
from envkit import ChatEnv, Feedback, Task
from envkit.metrics import summarize
from envkit.parsing import last_integer
from envkit.policies import CallablePolicy
from envkit.types import Message


class DoubleEnv(ChatEnv):
    """Double a number. One answer per episode (``max_turns=1``): the episode ends after it."""

    step_in_thread = False  # quick pure Python: step on the event loop

    def __init__(self, *, high: int = 100, render_mode: str | None = None) -> None:
        super().__init__(max_turns=1, render_mode=render_mode)
        self.high = high

    def make_task(self, options: dict[str, Any] | None) -> Task:
        n = int(self.np_random.integers(1, self.high))  # randomness only from np_random
        return Task(messages=[{"role": "user", "content": f"What is 2 x {n}?"}], reference=2 * n)

    def respond(self, message: Message) -> Feedback:
        assert self.task is not None
        ok = last_integer(message.content) == self.task.reference
        return Feedback(reward=float(ok), done=True, info={"correct": ok})


envkit.register("Double-v0", entry_point=DoubleEnv)


def main() -> None:
    env = envkit.make("Double-v0")  # or gymnasium.make("envkit/Double-v0")
    obs, info = env.reset(seed=0)
    question = obs[-1]["content"]
    n = int(question.split()[-1].rstrip("?"))
    obs, reward, terminated, truncated, info = env.step(f"It is {2 * n}.")
    print(f"question: {question}")
    print(f"step: reward={reward} terminated={terminated} truncated={truncated} info={info}")

    def sloppy(messages: list[dict[str, Any]], tools: Any) -> str:
        """Right when the number is even, else off by one."""
        n = int(messages[-1]["content"].split()[-1].rstrip("?"))
        return str(2 * n if n % 2 == 0 else 2 * n + 1)

    groups = envkit.collect(
        "Double-v0", CallablePolicy(sloppy), seeds=range(20), group_size=2, progress=False
    )
    summary = summarize(groups)
    print(f"episodes: {summary.episodes}")
    print(f"mean reward: {summary.mean_reward:.2f}")
    print(f"outcomes: {dict(summary.outcomes)}")


if __name__ == "__main__":
    main()
