"""DockerSandbox basics: commands, files, timeouts, output caps, async twins, lifecycle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from envkit.sandbox import (
    DockerSandbox,
    Sandbox,
    SandboxClosedError,
    SandboxConfig,
    SandboxFileError,
)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module", params=[True, False], ids=["fast_exec", "one_exec_per_command"])
def sb(request: pytest.FixtureRequest, docker_client: Any) -> Iterator[DockerSandbox]:
    """Both transports: the persistent supervisor channel and one docker exec per command."""
    sandbox = DockerSandbox(SandboxConfig(fast_exec=request.param, output_limit=4096))
    yield sandbox
    sandbox.close()


def test_follows_the_protocol(shared_sandbox: DockerSandbox) -> None:
    assert isinstance(shared_sandbox, Sandbox)


def test_shell_and_argv_commands(sb: DockerSandbox) -> None:
    r = sb.exec("echo out; echo err >&2; exit 3", timeout=10)
    assert (r.exit_code, r.stdout, r.stderr, r.timed_out) == (3, "out\n", "err\n", False)
    r = sb.exec(["python3", "-c", "import sys; print(sys.argv[1:])", "a b", "$HOME"], timeout=10)
    assert r.stdout == "['a b', '$HOME']\n" and r.ok


def test_runs_as_sandbox_user_in_workdir(sb: DockerSandbox) -> None:
    r = sb.exec("id -u; pwd; echo $HOME", timeout=10)
    assert r.stdout.split() == ["1000", "/work", "/work"]


def test_stdin_env_and_workdir(sb: DockerSandbox) -> None:
    r = sb.exec(["python3", "-c", "import sys; print(sys.stdin.read().upper())"], stdin="abc")
    assert r.stdout == "ABC\n"
    big = "x" * 300_000  # more than a pipe buffer and than one argv string may hold
    r = sb.exec(["wc", "-c"], stdin=big)
    assert r.stdout.strip() == "300000"
    r = sb.exec("echo $GREETING", env={"GREETING": "hello"})
    assert r.stdout == "hello\n"
    sb.exec("mkdir -p sub")
    assert sb.exec("pwd", workdir="/work/sub").stdout == "/work/sub\n"


def test_missing_command_is_exit_127(sb: DockerSandbox) -> None:
    r = sb.exec(["no-such-program"], timeout=10)
    assert r.exit_code == 127 and "no-such-program" in r.stderr


def test_write_and_read_files(sb: DockerSandbox) -> None:
    sb.write_files({"d/e/text.txt": "héllo\n", "blob.bin": bytes(range(256)), "/tmp/abs": "t"})
    assert sb.read_file("d/e/text.txt") == "héllo\n".encode()
    assert sb.read_file("/work/blob.bin") == bytes(range(256))
    assert sb.read_text("/tmp/abs") == "t"
    assert sb.exec("cat d/e/text.txt").stdout == "héllo\n"
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        sb.read_file("nope.txt")
    with pytest.raises(SandboxFileError, match=r"Read-only|Permission"):
        sb.write_files({"/etc/evil": "x"})


def test_timeout_kills_the_whole_tree(sb: DockerSandbox) -> None:
    t0 = time.monotonic()
    r = sb.exec("sleep 60 & (setsid sleep 61 &); sleep 62", timeout=1)
    assert r.timed_out and r.exit_code == 137 and r.signal == 9
    assert r.duration_s >= 0.9  # it ran until the timeout...
    assert time.monotonic() - t0 < 40  # ...and no longer (a hang guard: unkilled, it takes 62 s)
    left = sb.exec("cat /proc/[0-9]*/cmdline | tr '\\0' ' '").stdout
    assert "sleep 6" not in left


def test_output_is_capped_and_flagged(sb: DockerSandbox) -> None:
    r = sb.exec("seq 1 100000", timeout=20)
    assert r.output_truncated and r.exit_code == 0
    assert len(r.stdout.encode()) < 4096 + 200
    assert r.stdout.startswith("1\n2\n3\n") and r.stdout.endswith("99999\n100000\n")
    assert "bytes cut by envkit" in r.stdout
    assert not sb.exec("echo short").output_truncated


def test_async_twins(sb: DockerSandbox) -> None:
    async def main() -> list[str]:
        await sb.awrite_files({"async.txt": "data"})
        assert await sb.aread_file("async.txt") == b"data"
        # Each command waits until all four have started (20 s at most: a hang guard), so they
        # only all print if they overlapped; run one after the other, the first times out.
        barrier = "touch /tmp/in.{i}; while [ $(ls /tmp/in.* | wc -l) -lt 4 ]; do sleep 0.05; done"
        results = await asyncio.gather(
            *(sb.aexec(f"{barrier.format(i=i)}; echo {i}", timeout=20) for i in range(4))
        )
        return [r.stdout.strip() for r in results]

    assert asyncio.run(main()) == ["0", "1", "2", "3"]  # the four commands overlapped


def test_bad_arguments_are_rejected(sb: DockerSandbox) -> None:
    with pytest.raises(ValueError, match="timeout"):
        sb.exec("true", timeout=0)
    with pytest.raises(ValueError, match="empty"):
        sb.exec("  ")
    with pytest.raises(TypeError, match="list of strings"):
        sb.exec(["echo", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="env"):
        sb.exec("true", env={"A": 1})  # type: ignore[dict-item]


def test_close_is_idempotent_and_removes_the_container(
    docker_client: Any, container_state: Any
) -> None:
    sb = DockerSandbox()
    assert container_state(sb.container_id)["Running"]
    sb.close()
    sb.close()
    assert container_state(sb.container_id) is None
    with pytest.raises(SandboxClosedError, match="closed"):
        sb.exec("true")


def test_context_managers(docker_client: Any, container_state: Any) -> None:
    with DockerSandbox() as sb:
        assert sb.exec("echo in").stdout == "in\n"
    assert container_state(sb.container_id) is None

    async def main() -> str:
        async with DockerSandbox() as asb:
            return asb.container_id

    assert container_state(asyncio.run(main())) is None


def test_labels_name_the_owner(shared_sandbox: DockerSandbox, docker_client: Any) -> None:
    import os

    labels = docker_client.api.inspect_container(shared_sandbox.container_id)["Config"]["Labels"]
    assert labels["envkit.sandbox"] == "1"
    assert labels["envkit.owner_pid"] == str(os.getpid())
    assert labels["envkit.run_id"] == os.environ["ENVKIT_SANDBOX_RUN_ID"]
