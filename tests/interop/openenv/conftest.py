"""Fixtures of the OpenEnv interop tests.

The test games (``openenv_games``) and ``envkit serve-env``'s app are served by real uvicorn on
127.0.0.1: in a thread of the test process where a test only needs a server (importing openenv
costs ~10 s per process), as a process where the test kills it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("openenv", reason='needs openenv-core: pip install "envkit-rl[openenv]"')

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from openenv_support import ThreadServer  # noqa: E402


@pytest.fixture(scope="session")
def guess_server() -> Iterator[str]:
    """The URL of the guess-the-number OpenEnv game."""
    from openenv_games import guess_app

    s = ThreadServer(guess_app)
    yield s.url
    s.stop()


@pytest.fixture(scope="session")
def calc_server() -> Iterator[str]:
    """The URL of the tool-style (MCP) OpenEnv calculator game."""
    from openenv_games import calc_app

    s = ThreadServer(calc_app)
    yield s.url
    s.stop()


# `envkit serve-env` as a process takes ~20 s to start here (openenv imports gradio): it starts
# in a thread as soon as a test that needs it is collected, while the other tests run.
_SERVE_ENV_COMMAND = [
    sys.executable,
    "-m",
    "envkit.cli.main",
    "serve-env",
    "GuessNumber-v0",
    "-k",
    "low=1",
    "-k",
    "high=10",
    "-k",
    "max_turns=10",
    "--port",
    "{port}",
]
_early: dict[str, Any] = {}


def _start_serve_env() -> None:
    from envkit.environments.openenv import OpenEnvChatEnv

    try:
        _early["env"] = OpenEnvChatEnv.from_command(
            _SERVE_ENV_COMMAND, max_turns=10, timeout=10, startup_timeout=120
        )
    except BaseException as e:  # reported by the fixture
        _early["error"] = e


def _start_image() -> None:
    from envkit.environments.openenv import OpenEnvChatEnv

    try:
        from openenv_image import ensure_image

        _early["image"] = ensure_image()
        _early["image_env"] = OpenEnvChatEnv.from_image(
            _early["image"], max_turns=8, timeout=10, startup_timeout=180
        )
    except BaseException as e:  # reported by the fixture
        _early["image_error"] = e


@pytest.hookimpl(trylast=True)  # after -m/-k deselected what will not run
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def wanted(fixture: str) -> bool:
        return any(fixture in getattr(item, "fixturenames", ()) for item in items)

    if wanted("serve_env_cli"):
        _early["thread"] = threading.Thread(target=_start_serve_env, daemon=True)
        _early["thread"].start()
    if wanted("image_env") and _docker_ok():
        _early["image_thread"] = threading.Thread(target=_start_image, daemon=True)
        _early["image_thread"].start()


def _docker_ok() -> bool:
    try:
        ok = (
            subprocess.run(
                ["docker", "image", "inspect", "envkit-sandbox:latest"],
                capture_output=True,
                timeout=20,
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return ok


@pytest.fixture(scope="session")
def image_env() -> Iterator[Any]:
    """An ``OpenEnvChatEnv`` on a container of the guess game's image (built offline)."""
    if "image_thread" not in _early:
        pytest.skip("needs the Docker daemon and envkit-sandbox:latest")
    _early["image_thread"].join(600)
    if "image_error" in _early:
        raise _early["image_error"]
    env = _early["image_env"]
    yield env
    env.close()


@pytest.fixture(scope="session")
def serve_env_cli() -> Iterator[Any]:
    """An ``OpenEnvChatEnv`` on ``envkit serve-env GuessNumber-v0`` started from its command."""
    _early["thread"].join(180)
    if "error" in _early:
        raise _early["error"]
    env = _early["env"]
    yield env
    env.close()


@pytest.fixture(scope="session", autouse=True)
def _close_early_servers() -> Iterator[None]:
    """Whatever started early and was not used (a test failed first) is closed at the end."""
    yield
    for name in ("thread", "image_thread"):
        if name in _early:
            _early[name].join(600)
    for name in ("env", "image_env"):
        if name in _early:
            _early[name].close()
