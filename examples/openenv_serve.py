"""Serve an envkit env over OpenEnv and play it with openenv-core's own client.

Shows: ``envkit.serving.openenv_server.build_app`` is what ``envkit serve-env`` runs: openenv's own
server over one envkit env per WebSocket session. Here the server runs in a thread and
openenv's ``GenericEnvClient`` finds GuessNumber's secret by bisection on its "higher"/"lower"
replies. The same from a shell::

    envkit serve-env GuessNumber-v0 -k low=1 -k high=16 --port 8000

Run it::

    python examples/openenv_serve.py

It prints the turns of two episodes and their rewards (GuessNumber's own, > 0 when found).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from openenv.core.generic_client import GenericEnvClient

from envkit.serving.openenv_server import build_app


def serve_in_thread(app: Any) -> tuple[str, Callable[[], None]]:
    """Serves ``app`` on a free 127.0.0.1 port; returns its URL and its stop()."""
    import uvicorn

    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{port}", stop


def play(url: str, seed: int) -> float:
    """One episode with openenv's client: bisection on the env's hints."""
    lo, hi = 1, 16
    with GenericEnvClient(base_url=url).sync() as client:
        result = client.reset(seed=seed)
        while not result.done:
            guess = (lo + hi) // 2
            result = client.step({"content": str(guess)})
            hint = result.observation["messages"][-1]["content"].lower()
            print(f"  guess {guess}: {hint if not result.done else 'found'}")
            if "higher" in hint:
                lo = guess + 1
            elif "lower" in hint:
                hi = guess - 1
        return float(result.reward or 0.0)


def main(episodes: int = 2) -> list[float]:
    app = build_app("GuessNumber-v0", {"low": 1, "high": 16, "max_turns": 6}, max_sessions=2)
    url, stop = serve_in_thread(app)
    try:
        rewards = []
        for seed in range(episodes):
            print(f"episode {seed}:")
            rewards.append(play(url, seed))
            print(f"  reward {rewards[-1]:.2f}")
        return rewards
    finally:
        stop()


if __name__ == "__main__":
    main()
