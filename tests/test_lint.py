"""The tree is ``ruff`` clean (lint and format), as the project's standards require."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"]
)
def test_ruff_is_clean(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "ruff", *args]  # the dev extra's ruff, next to this python
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        f"ruff {' '.join(args)} found problems:\n{proc.stdout}{proc.stderr}"
    )
