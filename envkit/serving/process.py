"""``ServerProcess``: ``envkit serve MODEL`` in a subprocess on a free port of 127.0.0.1.

Usage (tests/serving/test_server.py runs it)::

    with ServerProcess("tiny-random", args=["--seed", "0"]) as server:
        policy = ServerPolicy(server.url, "tiny-random", tokenizer=tokenizer)
        ...
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ServerProcess", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """Runs ``python -m envkit.cli serve MODEL --port <free> ARGS`` until ``close()``.

    The constructor returns once ``GET /health`` answers 200 (the model is loaded).

    Args:
        model: What ``envkit serve`` takes: ``"tiny-random"``, ``"smollm2-135m"``, a directory.
        args: More ``envkit serve`` options, e.g. ``["--adapter", "a=/path", "--seed", "0"]``.
        startup_timeout_s: How long to wait for the server to come up.

    Attributes:
        url: ``http://127.0.0.1:PORT`` (the base, without ``/v1``).
        log_path: The file that receives the server's stdout and stderr.

    Raises:
        RuntimeError: the server exited or did not come up in time (with its log's tail).
    """

    def __init__(
        self, model: str, *, args: Sequence[str] = (), startup_timeout_s: float = 120
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        fd, name = tempfile.mkstemp(prefix="envkit-serve-", suffix=".log")
        self.log_path = Path(name)
        cmd = [sys.executable, "-m", "envkit.cli", "serve", model, "--port", str(self.port)]
        cmd += list(args)
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        try:
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                cmd, stdout=fd, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        finally:
            os.close(fd)
        try:
            self._wait(startup_timeout_s)
        except BaseException:
            self.close()
            raise

    def _wait(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"envkit serve exited with code {self._proc.returncode}:\n{self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(self.url + "/health", timeout=2) as r,
            ):
                if r.status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(
            f"envkit serve did not answer {self.url}/health within {timeout_s:.0f} s:\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's output."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        """Stops the server and its children (SIGTERM, then SIGKILL after 10 s). Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
