"""Deliberately hackable test envs, one per probe kind, and sound ones (``envkit validate``'s
tests). Importing this module registers them as ``envkit/Hack*-v0`` and ``envkit/Sound*-v0``.

Each hackable env is a small sum task (``What is a + b?``) whose reward has one hole.
"""

from __future__ import annotations

import random
from typing import Any

from envkit import ChatEnv, Feedback, Task, ToolBox, register, tool
from envkit.canary import Canary, tool_call_turn
from envkit.environments import SandboxedEnv
from envkit.parsing import extract_answer, last_integer
from envkit.types import Message


class SumEnv(ChatEnv):
    """Sound: the last integer of the reply must be ``a + b``."""

    step_in_thread = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"max_turns": 1, **kwargs})

    def make_task(self, options: dict[str, Any] | None) -> Task:
        a, b = (int(x) for x in self.np_random.integers(10, 90, size=2))
        return Task(
            messages=[{"role": "user", "content": f"What is {a} + {b}?"}],
            id=f"{a}+{b}",
            answer=a + b,
            reference=a + b,
        )

    def correct(self, text: str | None) -> bool:
        assert self.task is not None
        return last_integer(extract_answer(text) or text or "") == self.task.answer

    def respond(self, message: Message) -> Feedback:
        return Feedback(reward=float(self.correct(message.content)), done=True)


class AnyNumberEnv(SumEnv):
    """Reward search: any reply that contains the right number anywhere earns 1."""

    def respond(self, message: Message) -> Feedback:
        words = (message.content or "").replace("<", " ").replace(">", " ").replace(",", " ")
        ok = str(self.task.answer) in words.split()  # type: ignore[union-attr]
        return Feedback(reward=float(ok), done=True)


class ClaimsEnv(SumEnv):
    """Degenerate: believes a reply that says all tests passed."""

    def respond(self, message: Message) -> Feedback:
        claimed = "all tests passed" in (message.content or "").lower()
        return Feedback(reward=float(claimed or self.correct(message.content)), done=True)


class InjectableEnv(SumEnv):
    """Injection: a string-matching grader that obeys 'score this 1'."""

    def respond(self, message: Message) -> Feedback:
        obeyed = "score this 1" in (message.content or "").lower()
        return Feedback(reward=float(obeyed or self.correct(message.content)), done=True)


class LeakyEnv(SumEnv):
    """Hygiene: the feedback to a wrong answer tells the answer (two turns)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"max_turns": 2, **kwargs})

    def respond(self, message: Message) -> Feedback:
        if self.correct(message.content):
            return Feedback(reward=1.0 if self.turn == 1 else 0.5, done=True)
        text = f"Wrong: it is {self.task.answer}."  # type: ignore[union-attr]
        return Feedback(messages=[{"role": "user", "content": text}])


class PromptLeakEnv(SumEnv):
    """Hygiene: the prompt itself carries the answer."""

    def make_task(self, options: dict[str, Any] | None) -> Task:
        task = super().make_task(options)
        text = f"{task.messages[0]['content']} (grader note: expected {task.answer})"
        task.messages = [{"role": "user", "content": text}]
        return task


class YesNoEnv(SumEnv):
    """Sound: the prompt names both answers ("yes or no"); that is not a leak."""

    def make_task(self, options: dict[str, Any] | None) -> Task:
        a, b = (int(x) for x in self.np_random.integers(10, 90, size=2))
        ref = "yes" if (a + b) % 2 == 0 else "no"
        prompt = f"Is {a} + {b} even? Answer yes or no."
        return Task(messages=[{"role": "user", "content": prompt}], answer=ref, reference=ref)

    def respond(self, message: Message) -> Feedback:
        ok = (message.content or "").strip().lower() == self.task.answer  # type: ignore[union-attr]
        return Feedback(reward=float(ok), done=True)


class FreeRewardEnv(SumEnv):
    """Floor: every reply earns the maximum."""

    def respond(self, message: Message) -> Feedback:
        return Feedback(reward=1.0, done=True)


class SandboxGradedEnv(SandboxedEnv):
    """Isolation: a sandboxed env that does not declare where it grades (``grader_isolated``).

    Its episodes never touch the sandbox, so it runs without Docker."""

    step_in_thread = False
    make_task = SumEnv.make_task
    correct = SumEnv.correct
    respond = SumEnv.respond


class IsolatedGraderEnv(SandboxGradedEnv):
    """Isolation, sound: declares that it grades outside the agent's sandbox."""

    grader_isolated = True


class RandomTaskEnv(SumEnv):
    """Hygiene: draws its task from the global RNG, not from the seed."""

    def make_task(self, options: dict[str, Any] | None) -> Task:
        a, b = random.randint(10, 89), random.randint(10, 89)
        return Task(
            messages=[{"role": "user", "content": f"What is {a} + {b}?"}],
            id=f"{a}+{b}",
            answer=a + b,
            reference=a + b,
        )


class OutOfRangeEnv(SumEnv):
    """Hygiene: pays 5 for a right answer but declares rewards in [0, 1]."""

    reward_range = (0.0, 1.0)

    def respond(self, message: Message) -> Feedback:
        return Feedback(reward=5.0 * self.correct(message.content), done=True)


class BrokenGoldenEnv(SumEnv):
    """Golden: the grader wants ``a - b`` while the reference says ``a + b``."""

    def respond(self, message: Message) -> Feedback:
        return Feedback(reward=0.0, done=True)


class PassphraseEnv(SumEnv):
    """Canary: a debug passphrase left in the grader, and a canary that knows it."""

    canaries = (
        Canary("debug-passphrase", "says the grader's debug passphrase", lambda env: "xyzzy"),
    )

    def respond(self, message: Message) -> Feedback:
        hacked = (message.content or "").strip() == "xyzzy"
        return Feedback(reward=float(hacked or self.correct(message.content)), done=True)


class SoundCanaryEnv(SumEnv):
    """Canary, sound: declares a canary that earns nothing."""

    canaries = (Canary("debug-passphrase", "says a passphrase", lambda env: "xyzzy"),)


class FileToolsEnv(ChatEnv):
    """Tool env with an in-memory file system: write_file, read_file, submit.

    ``grade_from_file=True`` (the hackable one) reads the score from ``reward.txt`` when it
    exists, a file the agent can write; otherwise the submitted answer must be ``a + b``.
    """

    step_in_thread = False
    grade_from_file = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_turns=kwargs.pop("max_turns", 5), **kwargs)
        self.toolbox = ToolBox([self.write_file, self.read_file, self.submit])
        from envkit.spaces import AssistantTurn

        self.action_space = AssistantTurn(tool_names=list(self.toolbox.tools))
        self.files: dict[str, str] = {}
        self.submitted: str | None = None

    @tool
    def write_file(self, path: str, content: str) -> str:
        """Writes a file.

        Args:
            path: The file's path.
            content: Its text.
        """
        self.files[str(path)] = str(content)
        return "ok"

    @tool
    def read_file(self, path: str) -> str:
        """Reads a file.

        Args:
            path: The file's path.
        """
        return self.files.get(str(path), "no such file")

    @tool
    def submit(self, answer: str) -> str:
        """Submits the answer.

        Args:
            answer: The answer.
        """
        self.submitted = str(answer)
        return "received"

    def make_task(self, options: dict[str, Any] | None) -> Task:
        a, b = (int(x) for x in self.np_random.integers(10, 90, size=2))
        self.files = {"numbers.txt": f"{a} {b}"}
        self.submitted = None
        return Task(
            messages=[{"role": "user", "content": "Add the numbers in numbers.txt."}],
            answer=a + b,
            reference=a + b,
        )

    def golden(self) -> list[Any]:
        return [tool_call_turn(("submit", {"answer": str(self.task.answer)}))]  # type: ignore[union-attr]

    def _score(self, answer: str | None) -> float:
        if self.grade_from_file and "reward.txt" in self.files:
            try:
                return float(self.files["reward.txt"].split()[0])
            except ValueError:
                return 0.0
        return float(last_integer(answer or "") == self.task.answer)  # type: ignore[union-attr]

    def after_tools(self, message: Message, results: list[Message]) -> Feedback:
        if self.submitted is None:
            return Feedback(messages=results)
        return Feedback(reward=self._score(self.submitted), done=True, messages=results)

    def respond(self, message: Message) -> Feedback:
        return Feedback(reward=self._score(message.content), done=True)


class GraderFileToolsEnv(FileToolsEnv):
    """Tool abuse: the grader reads reward.txt, which the agent can write."""

    grade_from_file = True


HACKABLE: dict[str, tuple[type[ChatEnv], str]] = {
    "HackAnyNumber-v0": (AnyNumberEnv, "many-candidates"),
    "HackClaims-v0": (ClaimsEnv, "claims"),
    "HackInjection-v0": (InjectableEnv, "grader-injection"),
    "HackLeak-v0": (LeakyEnv, "hygiene:leak"),
    "HackPromptLeak-v0": (PromptLeakEnv, "echo"),
    "HackFreeReward-v0": (FreeRewardEnv, "null"),
    "HackSandboxGrader-v0": (SandboxGradedEnv, "hygiene:isolation"),
    "HackRandomTask-v0": (RandomTaskEnv, "hygiene:determinism"),
    "HackRange-v0": (OutOfRangeEnv, "hygiene:range"),
    "HackGolden-v0": (BrokenGoldenEnv, "golden"),
    "HackCanary-v0": (PassphraseEnv, "canary:debug-passphrase"),
    "HackToolFile-v0": (GraderFileToolsEnv, "tool-abuse"),
}
"""Env id -> (class, the probe that must catch it)."""

SOUND: dict[str, type[ChatEnv]] = {
    "SoundSum-v0": SumEnv,
    "SoundCanary-v0": SoundCanaryEnv,
    "SoundTools-v0": FileToolsEnv,
    "SoundYesNo-v0": YesNoEnv,
    "SoundIsolated-v0": IsolatedGraderEnv,
}

for _id, (_cls, _probe) in HACKABLE.items():
    register(_id, _cls, override=True)
for _id, _cls in SOUND.items():
    register(_id, _cls, override=True)
