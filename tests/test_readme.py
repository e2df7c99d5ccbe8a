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
