"""``examples/mcp_tools.py`` runs: its FastMCP server's tools are offered and a scripted policy
solves every task through them."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from mcp_support import wait_no_server_processes

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "mcp_tools.py"


def test_mcp_tools_example(capsys: pytest.CaptureFixture[str]) -> None:
    module = runpy.run_path(str(EXAMPLE), run_name="mcp_tools_example")
    module["main"]([])
    out = capsys.readouterr().out
    assert "tools: ['search', 'read']" in out
    assert "-> 'K2: 8611', reward 1.0" in out or "-> 'Nile: 6650', reward 1.0" in out
    assert out.count("reward 1.0") == 4
    assert "mean reward: 1.0" in out
    # the shared server stopped with the last env; its command line names the example
    assert wait_no_server_processes(script=str(EXAMPLE)) == []
