"""Helpers shared by the MCP interop tests: the test server's command and its processes."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import psutil

from envkit.environments.mcp import MCPServer

SERVER = str(Path(__file__).resolve().parent / "mcp_server.py")


def stdio_server(**kw: Any) -> MCPServer:
    """The test server over stdio (a fresh ``python mcp_server.py`` per session)."""
    kw.setdefault("stderr", "devnull")
    return MCPServer(command=[sys.executable, SERVER], **kw)


def server_processes(script: str = SERVER) -> list[psutil.Process]:
    """This test process's live children that run ``script`` (the stdio test server)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = p.cmdline()
            if p.status() != psutil.STATUS_ZOMBIE and script in cmd and "--http" not in cmd:
                out.append(p)
        except psutil.Error:
            continue
    return out


def wait_no_server_processes(timeout: float = 10.0, script: str = SERVER) -> list[psutil.Process]:
    """Waits until no stdio test server runs (episode ends close them in the background)."""
    deadline = time.monotonic() + timeout
    while (left := server_processes(script)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
