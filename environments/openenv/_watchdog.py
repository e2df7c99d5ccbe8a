"""Runs a server command and ends it when the envkit process that owns it dies.

Usage: ``python -m envkit.environments.openenv._watchdog OWNER_PID [--docker-rm NAME] -- CMD...``

The watchdog leads its own process group and runs ``CMD`` in it. Twice a second it checks that
``OWNER_PID`` is alive; once it is not (the owner was killed, even with SIGKILL), it removes the
Docker container ``NAME`` (if given) and kills the whole group. When ``CMD`` exits, the watchdog
exits with its status.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return os.getppid() == pid


def main(argv: list[str]) -> int:
    owner = int(argv[0])
    rest = argv[1:]
    container = None
    if rest[:1] == ["--docker-rm"]:
        container, rest = rest[1], rest[2:]
    if rest[:1] != ["--"] or len(rest) < 2:
        print("usage: _watchdog OWNER_PID [--docker-rm NAME] -- CMD...", file=sys.stderr)
        return 2
    child = subprocess.Popen(rest[1:])

    def stop(*_: object) -> None:
        if container:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, timeout=30)
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(3)
        os.killpg(os.getpgid(0), signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    while True:
        code = child.poll()
        if code is not None:
            return code
        if not _alive(owner):
            stop()
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
