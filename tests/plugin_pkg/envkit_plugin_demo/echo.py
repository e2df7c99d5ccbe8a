"""``envkit/PluginEcho-v0``: repeat the word you are given (a plug-in env for tests)."""

from __future__ import annotations

from typing import Any

from envkit import ChatEnv, Feedback, Task
from envkit.types import Message

WORDS = ["alpha", "bravo", "charlie", "delta"]


class EchoEnv(ChatEnv):
    """Repeat the word; reward 1 when the reply is exactly that word.

    One answer per task: the episode terminates after it, right or wrong.
    """

    def __init__(
        self, *, max_turns: int = 1, prefix: str = "Say", render_mode: str | None = None
    ) -> None:
        super().__init__(max_turns=max_turns, render_mode=render_mode)
        self.prefix = prefix

    def make_task(self, options: dict[str, Any] | None) -> Task:
        word = WORDS[int(self.np_random.integers(len(WORDS)))]
        return Task(messages=[{"role": "user", "content": f"{self.prefix} {word}"}], answer=word)

    def respond(self, message: Message) -> Feedback:
        assert self.task is not None
        ok = (message.content or "").strip() == self.task.answer
        return Feedback(reward=float(ok), done=True, info={"correct": ok})
