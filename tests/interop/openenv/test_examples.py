"""The two OpenEnv examples run and show what their docstrings promise."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_openenv_play_example(capsys: pytest.CaptureFixture[str], clean_registry: None) -> None:
    module = runpy.run_path(str(EXAMPLES / "openenv_play.py"), run_name="not_main")
    assert module["main"](episodes=3) == [1.0, 1.0, 1.0]
    out = capsys.readouterr().out
    assert "mean reward 1.00" in out and "Repeat exactly this word" in out


def test_openenv_serve_example(capsys: pytest.CaptureFixture[str]) -> None:
    module = runpy.run_path(str(EXAMPLES / "openenv_serve.py"), run_name="not_main")
    rewards = module["main"](episodes=2)
    assert len(rewards) == 2 and all(r > 0 for r in rewards)  # found the secret both times
    assert "found" in capsys.readouterr().out
