"""The reaper: no container outlives its owner (normal exit, SIGINT, SIGTERM, SIGKILL + cleanup,
and the hard lifetime deadline)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from typer.testing import CliRunner

from envkit.sandbox import DockerSandbox, SandboxConfig, SandboxDiedError, reaper

pytestmark = pytest.mark.docker

# The owner starts with the dispositions of an interactive program, whatever it inherited: run
# as `nohup make test &`, SIGHUP and SIGINT arrive ignored, and an owner that ignores them rightly
# survives them (test_owner_that_ignores_a_signal_keeps_its_containers).
OWNER_SCRIPT = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGHUP, signal.SIG_IGN if sys.argv[1] == "nohup" else signal.SIG_DFL)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
from envkit.sandbox import DockerSandbox
from envkit.sandbox.pool import SandboxPool
sb = DockerSandbox()
pool = SandboxPool(size=1).start()
held = pool.get()
print(sb.container_id, held.container_id, flush=True)
if sys.argv[1] == "exit":
    sys.exit(0)
time.sleep(120)
"""


def _start_owner(mode: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    ids = line.split()
    assert len(ids) == 2, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, ids


def _wait_gone(state: Any, ids: list[str], seconds: float = 20) -> list[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [i for i in ids if state(i) is not None]
        if not left:
            return []
        time.sleep(0.2)
    return left


@pytest.mark.parametrize(
    ("mode", "sig"),
    [("exit", None), ("wait", signal.SIGTERM), ("wait", signal.SIGINT), ("wait", signal.SIGHUP)],
    ids=["normal-exit", "SIGTERM", "SIGINT", "SIGHUP"],
)
def test_owner_exit_removes_its_containers(
    docker_client: Any, container_state: Any, mode: str, sig: int | None
) -> None:
    proc, ids = _start_owner(mode)
    try:
        if sig is not None:
            assert all(container_state(i)["Running"] for i in ids)
            proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        _end(proc)
    assert _wait_gone(container_state, ids) == []


def test_owner_that_ignores_a_signal_keeps_its_containers(
    docker_client: Any, container_state: Any
) -> None:
    """A program run under ``nohup`` ignores SIGHUP: envkit's reaper must not turn the ignored
    signal into an exit (it would kill a training run whose terminal closed)."""
    proc, ids = _start_owner("nohup")
    try:
        proc.send_signal(signal.SIGHUP)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=3)
        assert all(container_state(i)["Running"] for i in ids)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        _end(proc)
    assert _wait_gone(container_state, ids) == []


def _end(proc: subprocess.Popen[str]) -> None:
    """Kills an owner a failed test left running (its containers are then reaped by others)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


def test_killed_owner_is_reaped_by_cleanup(docker_client: Any, container_state: Any) -> None:
    proc, ids = _start_owner("wait")
    proc.kill()
    proc.wait(timeout=30)
    labels = docker_client.api.inspect_container(ids[0])["Config"]["Labels"]
    names = [docker_client.api.inspect_container(i)["Name"].lstrip("/") for i in ids]
    assert reaper.owner_alive(labels) is False
    assert all(container_state(i) is not None for i in ids)  # SIGKILL leaves them behind...
    from envkit.cli.main import app

    result = CliRunner().invoke(app, ["sandbox", "cleanup"])
    assert result.exit_code == 0, result.output
    assert all(name in result.output for name in names), result.output
    assert _wait_gone(container_state, ids) == []  # ...and `envkit sandbox cleanup` reaps them


def test_reaper_spares_live_owners(shared_sandbox: DockerSandbox, docker_client: Any) -> None:
    labels = docker_client.api.inspect_container(shared_sandbox.container_id)["Config"]["Labels"]
    assert reaper.owner_alive(labels) is True
    assert reaper.owner_alive({**labels, reaper.LABEL_START: "1"}) is False  # a reused pid
    assert reaper.owner_alive({**labels, reaper.LABEL_HOST: "elsewhere"}) is None
    reaper.reap(docker_client)
    assert shared_sandbox.exec("echo kept").stdout == "kept\n"


def test_next_start_reaps_orphans(docker_client: Any, container_state: Any) -> None:
    proc, ids = _start_owner("wait")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    code = (
        "from envkit.sandbox import DockerSandbox\nDockerSandbox().close()\n"
        "import time; time.sleep(3)"  # the reaper runs in the background at the first start
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert _wait_gone(container_state, ids) == []


def test_lifetime_is_a_hard_deadline(docker_client: Any, container_state: Any) -> None:
    sb = DockerSandbox(SandboxConfig(lifetime=2))
    try:
        assert sb.exec("echo young").ok
        assert _wait_gone(container_state, [sb.container_id], seconds=15) == []
        with pytest.raises(SandboxDiedError):
            sb.exec("echo too late")
    finally:
        sb.close()
