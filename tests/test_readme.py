"""The README's Python examples run as written, and its commands match the Makefile and CI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_quickstart_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert len(blocks) >= 2
    namespace: dict = {"__name__": "__main__"}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["obs"][0]["content"].startswith("Spell")
    assert namespace["reward"] in (0.0, 1.0)
    assert namespace["summarize"](namespace["groups"]).episodes == 64


@pytest.mark.parametrize("command", ["make demo", "make test"])
def test_two_commands_documented(command: str) -> None:
    assert command in README
    target = command.split()[1]
    assert re.search(rf"^{target}:", (ROOT / "Makefile").read_text(), re.M)


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_speed_section_says_where_each_bundled_env_steps() -> None:
    from envkit.env import ChatEnv
    from envkit.environments.arithmetic import ArithmeticEnv
    from envkit.environments.countdown import CountdownEnv
    from envkit.environments.guess_number import GuessNumberEnv
    from envkit.environments.python_coding import PythonCodingEnv
    from envkit.environments.python_tools import PythonToolsEnv

    speed = " ".join(README.split("### Speed: where env code runs")[1].split("###")[0].split())
    for cls in (ArithmeticEnv, CountdownEnv, GuessNumberEnv):
        assert cls.step_in_thread is False, f"{cls.__name__}: README says it steps on the loop"
    assert "Arithmetic, Countdown and GuessNumber envs do" in speed
    for cls in (PythonCodingEnv, PythonToolsEnv):  # README: always in a worker thread
        assert cls.step_in_thread is True
        assert cls.areset is ChatEnv.areset and cls.astep is ChatEnv.astep, cls.__name__
    assert "The sandboxed envs (PythonCoding, PythonTools) set `step_in_thread = True`" in speed
    assert ChatEnv.step_in_thread == "auto" and 'By default (`step_in_thread = "auto"`)' in speed
