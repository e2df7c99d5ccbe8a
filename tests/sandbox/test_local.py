"""LocalSandbox (bubblewrap): the same protocol without a Docker daemon, and the same refusals."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from envkit.sandbox import Sandbox, SandboxClosedError, SandboxConfig, SandboxFileError
from envkit.sandbox.local_sandbox import LocalSandbox
from envkit.sandbox.pool import SandboxPool


@pytest.fixture(scope="module")
def local() -> Iterator[LocalSandbox]:
    sb = LocalSandbox(SandboxConfig(output_limit=4096))
    yield sb
    sb.close()


def test_protocol_and_basics(local: LocalSandbox) -> None:
    assert isinstance(local, Sandbox)
    r = local.exec("id -u; pwd; echo err >&2; exit 4", timeout=10)
    assert (r.exit_code, r.stdout, r.stderr) == (4, "1000\n/work\n", "err\n")
    local.write_files({"a/b.txt": "data"})
    assert local.read_file("a/b.txt") == b"data"
    assert local.exec(["cat", "a/b.txt"]).stdout == "data"
    with pytest.raises(FileNotFoundError):
        local.read_file("missing")
    assert local.exec(["python3", "-c", "print(input()[::-1])"], stdin="abc").stdout == "cba\n"


def test_host_is_hidden_and_read_only(local: LocalSandbox, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "secret").write_text("host-secret")
    monkeypatch.setenv("ENVKIT_TEST_SECRET", "env-secret")
    r = local.exec(f"cat {tmp_path}/secret /etc/shadow /root/x; env; ls /; echo x > /usr/evil")
    assert "host-secret" not in r.stdout and "env-secret" not in r.stdout
    assert "etc" not in r.stdout.split() and r.exit_code != 0
    with pytest.raises(SandboxFileError):
        local.write_files({"/usr/evil": "x"})
    status = local.exec("grep -E '^(CapEff|NoNewPrivs)' /proc/self/status").stdout
    assert "CapEff:\t0000000000000000" in status


def test_timeouts_limits_and_output_cap(local: LocalSandbox) -> None:
    t0 = time.monotonic()
    r = local.exec("sleep 60 & sleep 61", timeout=1)
    assert r.timed_out and time.monotonic() - t0 < 30  # a hang guard: unkilled, it takes 61 s
    r = local.exec(["python3", "-c", "x = bytearray(4 * 2**30)"], timeout=20)
    assert r.exit_code == 1 and "MemoryError" in r.stderr  # RLIMIT_AS
    r = local.exec("seq 1 100000")
    assert r.output_truncated and len(r.stdout) < 4300
    r = local.exec(
        ["python3", "-c", "import os\nwhile True:\n try: os.fork()\n except OSError: pass"],
        timeout=2,
    )
    assert r.timed_out
    assert local.exec("echo fine").stdout == "fine\n"


def test_reset_and_close(local: LocalSandbox) -> None:
    sb = LocalSandbox()
    sb.write_files({"f": "x", "/tmp/t": "y"})
    assert sb.reset()
    assert sb.exec("ls -A /work").stdout == ""
    host_dir = sb.host_dir
    sb.close()
    sb.close()
    assert not os.path.exists(host_dir)
    with pytest.raises(SandboxClosedError):
        sb.exec("true")


def test_pool_of_local_sandboxes() -> None:
    with SandboxPool(size=2, backend="local") as pool:
        with pool.acquire() as sb:
            sb.write_files({"left.txt": "x"})
        with pool.acquire() as sb:
            assert sb.exec("ls -A /work").stdout == ""


def test_network_opt_in_is_refused() -> None:
    with pytest.raises(ValueError, match="network"):
        LocalSandbox(SandboxConfig(network="bridge"))
