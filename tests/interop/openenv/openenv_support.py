"""Helpers of the OpenEnv interop tests: an in-thread uvicorn server, process lookups."""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any


class ThreadServer:
    """A uvicorn server of ``app`` on a free 127.0.0.1 port, in a daemon thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        from envkit.environments.openenv._servers import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def processes_of(pattern: str) -> list[str]:
    """Command lines of this machine's processes that contain ``pattern``."""
    out = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if pattern in line and "ps -eww" not in line]


def children_of(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]
