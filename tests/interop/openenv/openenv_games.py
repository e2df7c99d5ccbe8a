"""Two OpenEnv environments written with openenv-core's own server API, for the interop tests.

* ``guess_app``: guess a number in 1..100 (text game; ``GuessAction(guess: int)``), reward 1 and
  done on the right guess, "higher"/"lower" otherwise, done after 7 guesses.
* ``calc_app``: a tool-style env (``MCPEnvironment`` with FastMCP tools ``add`` and ``submit``);
  the reward (1 if the submitted sum is right) and ``done`` come with the ``submit`` call.

Serve with ``python -m uvicorn openenv_games:guess_app --app-dir tests/interop/openenv``.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from fastmcp import FastMCP
from openenv.core.env_server.http_server import create_app
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.mcp_environment import MCPEnvironment
from openenv.core.env_server.mcp_types import CallToolAction, CallToolObservation
from openenv.core.env_server.types import Action, Observation, State


class GuessAction(Action):
    guess: int


class GuessObservation(Observation):
    message: str = ""


class GuessEnv(Environment[GuessAction, GuessObservation, State]):
    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self) -> None:
        super().__init__()
        self._target = 0
        self._state = State()

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kw: Any):
        self._target = random.Random(seed).randint(1, 100)
        self._state = State(episode_id=episode_id, step_count=0)
        return GuessObservation(message="Guess my number between 1 and 100.")

    def step(self, action: GuessAction, timeout_s: float | None = None, **kw: Any):
        if action.guess == 13 and os.environ.get("GUESS_HANG_S"):
            time.sleep(float(os.environ["GUESS_HANG_S"]))  # a server that stops answering
        self._state.step_count += 1
        if action.guess == self._target:
            return GuessObservation(message="Correct!", reward=1.0, done=True)
        hint = "higher" if action.guess < self._target else "lower"
        return GuessObservation(message=hint, reward=0.0, done=self._state.step_count >= 7)

    @property
    def state(self) -> State:
        return self._state


class TaskObservation(Observation):
    prompt: str = ""


class CalcEnv(MCPEnvironment):
    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self) -> None:
        mcp = FastMCP("calc")
        self._answer = 0
        self._submitted: int | None = None
        self._state = State()

        @mcp.tool
        def add(a: int, b: int) -> int:
            """Adds two integers."""
            return a + b

        @mcp.tool
        def submit(answer: int) -> str:
            """Submits the final answer."""
            self._submitted = answer
            return "submitted"

        super().__init__(mcp)

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kw: Any):
        rng = random.Random(seed)
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        self._answer, self._submitted = a + b, None
        self._state = State(episode_id=episode_id, step_count=0)
        return TaskObservation(prompt=f"What is {a} + {b}? Use add, then submit the result.")

    async def step_async(self, action: Action, timeout_s: float | None = None, **kw: Any):
        obs = await super().step_async(action, timeout_s=timeout_s, **kw)
        self._state.step_count += 1
        if self._submitted is not None:
            obs.done = True
            obs.reward = float(self._submitted == self._answer)
        return obs

    def _step_impl(self, action: Action, timeout_s: float | None = None, **kw: Any):
        return Observation(metadata={"error": f"unknown action {type(action).__name__}"})

    @property
    def state(self) -> State:
        return self._state


guess_app = create_app(GuessEnv, GuessAction, GuessObservation, max_concurrent_envs=8)
calc_app = create_app(CalcEnv, CallToolAction, CallToolObservation, max_concurrent_envs=8)
