"""Play an OpenEnv environment with envkit: OpenEnv server -> envkit env -> ``collect``.

Shows: an OpenEnv env written with openenv-core's own server API (an echo game: repeat the word,
reward 1), served by uvicorn on 127.0.0.1 and played through ``envkit.environments.openenv``:
registered under an envkit id, it works with ``envkit.make``, ``collect``, and the CLI
(``envkit check/eval/train ... --import this_module``).

Run it::

    python examples/openenv_play.py                 # serves the echo env itself
    python examples/openenv_play.py --url URL       # plays a server already running at URL

It prints one line per episode and the mean reward (1.0: the scripted parrot always wins).
"""

from __future__ import annotations

import argparse
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from openenv.core.env_server.http_server import create_app
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import Action, Observation, State

import envkit
from envkit.environments.openenv import register_openenv
from envkit.policies import CallablePolicy

WORDS = ["apple", "river", "cloud", "stone", "maple"]


class EchoAction(Action):
    message: str


class EchoObservation(Observation):
    prompt: str = ""


class EchoEnv(Environment[EchoAction, EchoObservation, State]):
    """Repeat the word: reward 1 and done when the message is exactly it."""

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self) -> None:
        super().__init__()
        self._word, self._state = "", State()

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kw: Any):
        self._word = random.Random(seed).choice(WORDS)
        self._state = State(episode_id=episode_id)
        return EchoObservation(prompt=f"Repeat exactly this word: {self._word}")

    def step(self, action: EchoAction, timeout_s: float | None = None, **kw: Any):
        self._state.step_count += 1
        ok = action.message.strip() == self._word
        return EchoObservation(prompt="" if ok else "Wrong, try again.", reward=float(ok), done=ok)

    @property
    def state(self) -> State:
        return self._state


def serve_in_thread() -> tuple[str, Callable[[], None]]:
    """Serves the echo env on a free 127.0.0.1 port; returns its URL and its stop()."""
    import uvicorn

    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(EchoEnv, EchoAction, EchoObservation, max_concurrent_envs=8)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{port}", stop


def parrot(messages: list[dict[str, Any]], tools: Any) -> str:
    """The scripted player: repeats the last word of the opening message."""
    return messages[0]["content"].split()[-1]


def main(url: str | None = None, episodes: int = 4) -> list[float]:
    stop = None
    if url is None:
        url, stop = serve_in_thread()
    try:
        register_openenv("OpenEnvEcho-v0", url=url, max_turns=2, override=True)
        groups = envkit.collect(
            "OpenEnvEcho-v0", CallablePolicy(parrot), seeds=list(range(episodes)), progress=False
        )
        rewards = []
        for g in groups:
            t = g.trajectories[0]
            print(f"seed {t.seed}: {t.messages[0].content!r} -> reward {t.reward} ({t.outcome})")
            rewards.append(float(t.reward or 0.0))
        print(f"mean reward {sum(rewards) / len(rewards):.2f}")
        return rewards
    finally:
        if stop is not None:
            stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an OpenEnv server to play (default: serve the echo env)")
    parser.add_argument("--episodes", type=int, default=4)
    args = parser.parse_args()
    main(args.url, args.episodes)
