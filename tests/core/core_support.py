"""Small environments, tools and helpers shared by the core tests."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envkit import ChatEnv, Feedback, InfraError, Task, ToolBox, tool
from envkit.types import Message


def run_python(code: str, *, cwd: Path, pythonpath: Sequence[Path] = ()) -> dict[str, Any]:
    """Runs ``code`` in a fresh interpreter; it must print one JSON object as its last line."""
    env = {**os.environ}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    else:
        env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


WORDS = ["cat", "dog", "owl", "fox", "bee", "elk", "emu", "yak"]


class EchoEnv(ChatEnv):
    """Say the word you were asked for; wrong answers get "no" and another try."""

    report_instance = False
    """Put ``id(self)`` in step infos (tests of env reuse; makes infos differ per instance)."""

    def __init__(self, *, max_turns: int = 3, **kwargs: Any) -> None:
        super().__init__(max_turns=max_turns, **kwargs)

    def make_task(self, options: dict[str, Any] | None) -> Task:
        word = WORDS[int(self.np_random.integers(len(WORDS)))]
        if options and "word" in options:
            word = options["word"]
        return Task(
            messages=[
                {"role": "system", "content": "You repeat words."},
                {"role": "user", "content": f"Say {word}."},
            ],
            answer=word,
            info={"word": word},
        )

    def respond(self, message: Message) -> Feedback:
        assert self.task is not None
        ok = (message.content or "").strip() == self.task.answer
        return Feedback(
            reward=1.0 if ok else 0.0,
            done=ok,
            messages=[] if ok else [{"role": "user", "content": "no"}],
            info={"correct": ok, **({"instance": id(self)} if self.report_instance else {})},
        )


def answer_of(messages: list[dict[str, Any]]) -> str:
    """The word an ``EchoEnv`` conversation asks for."""
    first_user = next(m for m in messages if m["role"] == "user")
    return first_user["content"].removeprefix("Say ").removesuffix(".")


class InlineEchoEnv(EchoEnv):
    """``EchoEnv`` whose async methods run on the event loop."""

    step_in_thread = False


class FailingEnv(EchoEnv):
    """Raises ``error`` from ``respond`` (or ``reset`` when ``where="reset"``) for some seeds."""

    report_instance = True

    def __init__(
        self, *, error: BaseException, bad_seeds: tuple[int, ...] = (0,), where: str = "step"
    ) -> None:
        super().__init__(max_turns=2)
        self.error = error
        self.bad_seeds = bad_seeds
        self.where = where
        self.seed: int | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[override]
        self.seed = seed
        if self.where == "reset" and seed in self.bad_seeds:
            raise self.error
        return super().reset(seed=seed, options=options)

    def respond(self, message: Message) -> Feedback:
        if self.where == "step" and self.seed in self.bad_seeds:
            raise self.error
        return super().respond(message)


class SlowEnv(EchoEnv):
    """Sleeps ``delay`` seconds in ``respond`` for the seeds in ``slow_seeds`` (all if None)."""

    report_instance = True
    step_in_thread = True  # it blocks on purpose: never let "auto" learn it is quick

    def __init__(self, *, delay: float, slow_seeds: tuple[int, ...] | None = None) -> None:
        super().__init__(max_turns=1)
        self.delay = delay
        self.slow_seeds = slow_seeds
        self.seed: int | None = None
        self.closed = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[override]
        self.seed = seed
        return super().reset(seed=seed, options=options)

    def respond(self, message: Message) -> Feedback:
        if self.slow_seeds is None or self.seed in self.slow_seeds:
            time.sleep(self.delay)
        return super().respond(message)

    def close(self) -> None:
        self.closed = True
        super().close()


class InFlight:
    """Counts how many sections run at once (thread-safe); ``peak`` is the most seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __enter__(self) -> InFlight:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1

    def wait_for_peak(self, n: int, timeout: float = 30) -> bool:
        """Blocks until ``n`` sections have been in flight at once; False after ``timeout`` s.

        A section that calls this holds its slot until ``n`` overlap, so an overlap test does not
        depend on how fast a loaded machine starts threads. The timeout is only a hang guard for
        the failing case (nothing overlaps).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.peak >= n:
                    return True
            time.sleep(0.005)
        return False

    async def await_peak(self, n: int, timeout: float = 30) -> bool:
        """The async twin of ``wait_for_peak`` (polls without blocking the event loop)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.peak >= n:
                    return True
            await asyncio.sleep(0.005)
        return False


class GlobalRandomEnv(EchoEnv):
    """Broken: draws its task from the global ``random`` module, so seeds do not fix it."""

    def make_task(self, options: dict[str, Any] | None) -> Task:
        word = random.choice(WORDS) + str(random.random())
        return Task(messages=[{"role": "user", "content": f"Say {word}."}], answer=word)


class NonJsonInfoEnv(EchoEnv):
    """Broken: puts an object that JSON cannot encode in ``step``'s info."""

    def respond(self, message: Message) -> Feedback:
        fb = super().respond(message)
        fb.info["when"] = object()
        return fb


class BadToolSchemaEnv(EchoEnv):
    """Broken: advertises a tool whose name the OpenAI API rejects."""

    @property
    def tool_schemas(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "function",
                "function": {
                    "name": "look up!",
                    "description": "Looks things up.",
                    "parameters": {"type": "object", "properties": {}},
                },
            }
        ]


class CloseTwiceFailsEnv(EchoEnv):
    """Broken: ``close()`` raises the second time."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.close_calls = 0

    def close(self) -> None:
        self.close_calls += 1
        if self.close_calls > 1:
            raise RuntimeError("already closed")
        super().close()


# ------------------------------------------------------------------------------ tools
@tool
def add(a: int, b: int = 1) -> int:
    """Adds two integers.

    Args:
        a: The first addend.
        b: The second addend.
    """
    return a + b


@tool
def explode(reason: str) -> str:
    """Always fails.

    Args:
        reason: What to complain about.
    """
    raise ValueError(f"cannot do {reason}")


# What became of each ``nap`` call: "cancelled" (its timeout cut it) or "rested" (ran to the end).
NAP_LOG: list[str] = []


@tool(timeout=0.2)
async def nap(seconds: float) -> str:
    """Sleeps asynchronously; records in ``NAP_LOG`` whether it was cancelled.

    Args:
        seconds: How long.
    """
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        NAP_LOG.append("cancelled")
        raise
    NAP_LOG.append("rested")
    return "rested"


@tool
def broken_sandbox() -> str:
    """Pretends the sandbox under the env died."""
    raise InfraError("container killed")


class ToolEnv(EchoEnv):
    """``EchoEnv`` with tools; the episode continues after tool turns."""

    def __init__(self, *, tools: list[Any] | None = None, max_turns: int = 4, **kwargs: Any):
        ChatEnv.__init__(
            self,
            max_turns=max_turns,
            toolbox=ToolBox(tools if tools is not None else [add, explode, nap, broken_sandbox]),
            **kwargs,
        )


def tool_turn(*calls: tuple[str, Any], content: str | None = None) -> dict[str, Any]:
    """An assistant turn dict calling ``(name, arguments)`` pairs with ids c0, c1, ..."""

    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {
                "id": f"c{i}",
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                },
            }
            for i, (name, args) in enumerate(calls)
        ],
    }
