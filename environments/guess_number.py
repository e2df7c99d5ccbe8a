"""``envkit/GuessNumber-v0``: find a secret number with "higher"/"lower" feedback every turn.

The env picks a whole number in ``[low, high]`` (the task's ``reference``); the model's guess is
the last integer of the answer its reply marks (``<answer>``, ``\\boxed{}``...; see
``envkit.parsing.find_answer``) or else of the whole reply, and the env answers whether the
secret is higher or lower (or that the reply held no number, or a number out of range), with the
guesses left. Every reply uses up one of ``max_turns`` guesses; by default ``max_turns`` is what
binary search needs in the worst case. Finding the secret with guess ``t`` is worth
``max(0, 1 - guess_penalty * (t - 1))`` (1.0 on the first guess; ``guess_penalty`` defaults to
``1 / max_turns``), and not finding it 0, so fewer guesses earn more.

Example:
    >>> import envkit
    >>> env = envkit.make("GuessNumber-v0", low=1, high=10)
    >>> obs, info = env.reset(seed=0)
    >>> print(obs[-1]["content"].replace(". ", ".\\n"))
    I'm thinking of a whole number from 1 to 10.
    Guess it: after each guess I'll say whether my number is higher or lower.
    You have 4 guesses.
    Reply with just your guess.
    >>> obs, reward, terminated, truncated, info = env.step("5")
    >>> obs[-1]["content"], info["feedback"]
    ('Higher: my number is greater than 5. 3 guesses left.', 'higher')
    >>> obs, reward, terminated, truncated, info = env.step("My guess is 7")
    >>> obs[-1]["content"]
    'Higher: my number is greater than 7. 2 guesses left.'
    >>> _, reward, terminated, _, _ = env.step("9")
    >>> reward, terminated
    (0.5, True)
"""

from __future__ import annotations

from typing import Any

from envkit.env import ChatEnv, Feedback, Task
from envkit.environments._checks import require_int, require_range
from envkit.parsing import extract_answer, last_integer
from envkit.types import Message

__all__ = ["GuessNumberEnv"]


def _guesses(n: int) -> str:
    return f"{n} guess" if n == 1 else f"{n} guesses"


class GuessNumberEnv(ChatEnv):
    """Guess a secret whole number in ``[low, high]`` with higher/lower feedback.

    Args:
        low: Smallest possible secret.
        high: Largest possible secret.
        max_turns: Guesses allowed; default ``(high - low + 1).bit_length()``, the worst case
            of binary search.
        guess_penalty: Reward lost per extra guess, in ``[0, 1]``; default ``1 / max_turns``.
        system_prompt: Optional system message.
        render_mode: ``"ansi"``, ``"human"`` or ``None``.

    ``reset(options={"secret": n})`` plays with that secret instead of a random one.

    Info of each step: ``guess`` (int or None), ``feedback`` (``"correct"``, ``"higher"``,
    ``"lower"``, ``"no_number"`` or ``"out_of_range"``) and ``consistent``: whether the guess
    was still possible given the feedback so far (a measure of reasoning, not of luck).

    Raises:
        TypeError: a bound is not an int.
        ValueError: ``low > high``, or ``guess_penalty`` is outside ``[0, 1]``.
    """

    step_in_thread = False  # every step takes microseconds

    def __init__(
        self,
        *,
        low: int = 1,
        high: int = 100,
        max_turns: int | None = None,
        guess_penalty: float | None = None,
        system_prompt: str | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.low = require_int("low", low)
        self.high = require_int("high", high)
        require_range("low", low, "high", high)
        if max_turns is None:
            max_turns = (self.high - self.low + 1).bit_length()
        super().__init__(max_turns=max_turns, system_prompt=system_prompt, render_mode=render_mode)
        if guess_penalty is None:
            guess_penalty = 1.0 / self.max_turns
        if isinstance(guess_penalty, bool) or not isinstance(guess_penalty, (int, float)):
            raise TypeError(f"guess_penalty must be a float, got {guess_penalty!r}")
        if not 0.0 <= guess_penalty <= 1.0:
            raise ValueError(f"guess_penalty must be in [0, 1], got {guess_penalty}")
        self.guess_penalty = float(guess_penalty)
        self._possible = (self.low, self.high)  # the secrets still consistent with the feedback

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Starts a game with a secret drawn from ``seed`` (or ``options["secret"]``)."""
        obs, info = super().reset(seed=seed, options=options)
        self._possible = (self.low, self.high)
        return obs, info

    def make_task(self, options: dict[str, Any] | None) -> Task:
        if options:
            if set(options) != {"secret"}:
                raise ValueError(
                    "GuessNumber reset options must be {'secret': int} (or empty for a random "
                    f"secret); got keys {sorted(options)}"
                )
            secret = require_int("options['secret']", options["secret"])
            if not self.low <= secret <= self.high:
                raise ValueError(f"options['secret']={secret} is outside [{self.low}, {self.high}]")
        else:
            secret = int(self.np_random.integers(self.low, self.high + 1))
        prompt = (
            f"I'm thinking of a whole number from {self.low} to {self.high}. Guess it: after "
            "each guess I'll say whether my number is higher or lower. You have "
            f"{_guesses(self.max_turns)}. Reply with just your guess."
        )
        return Task(
            messages=[{"role": "user", "content": prompt}],
            id=f"{self.low}..{self.high}:{secret}",
            answer=secret,
            info={"low": self.low, "high": self.high},
            reference=secret,
        )

    def respond(self, message: Message) -> Feedback:
        assert self.task is not None
        secret: int = self.task.answer
        guess = last_integer(extract_answer(message.content) or message.content)
        lo, hi = self._possible
        info: dict[str, Any] = {
            "guess": guess,
            "correct": guess == secret,
            "consistent": guess is not None and lo <= guess <= hi,
        }
        if guess == secret:
            info["feedback"] = "correct"
            reward = max(0.0, 1.0 - self.guess_penalty * (self.turn - 1))
            return Feedback(reward=reward, done=True, info=info)
        left = f"{_guesses(self.max_turns - self.turn)} left."
        if guess is None:
            info["feedback"] = "no_number"
            text = (
                f"I could not find a number in your reply. Reply with just your guess, a whole "
                f"number from {self.low} to {self.high}. {left}"
            )
        elif not self.low <= guess <= self.high:
            info["feedback"] = "out_of_range"
            text = f"{guess} is outside the range {self.low} to {self.high}. {left}"
        elif guess < secret:
            info["feedback"] = "higher"
            self._possible = (max(lo, guess + 1), hi)
            text = f"Higher: my number is greater than {guess}. {left}"
        else:
            info["feedback"] = "lower"
            self._possible = (lo, min(hi, guess - 1))
            text = f"Lower: my number is less than {guess}. {left}"
        return Feedback(messages=[{"role": "user", "content": text}], info=info)
