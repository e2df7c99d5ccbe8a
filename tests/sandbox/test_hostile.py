"""Hostile code is contained: every attack is stopped, reported, and harms nothing else.

Each test runs an attack in a sandbox from a pool (scrubbed or replaced afterwards) and checks
that the ``ExecResult`` says what happened, that the same sandbox still works where it should,
and that another sandbox and the host stay healthy. Network isolation is in test_network.py.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from envkit.errors import InfraError
from envkit.sandbox import DockerSandbox
from envkit.sandbox.pool import SandboxPool

pytestmark = pytest.mark.docker


@pytest.fixture
def bystander(shared_sandbox: DockerSandbox) -> Iterator[DockerSandbox]:
    """Another sandbox that must stay healthy whatever the victim does."""
    yield shared_sandbox
    t0 = time.monotonic()
    r = shared_sandbox.exec("echo still-fine", timeout=10)
    assert r.stdout == "still-fine\n", r
    assert time.monotonic() - t0 < 5


def _still_usable(sb: DockerSandbox) -> None:
    r = sb.exec("echo alive", timeout=10)
    assert r.stdout == "alive\n", r


# Network isolation: tests/sandbox/test_network.py (listens on the host's bridge address).


# ---------------------------------------------------------------------------------- resources
def test_fork_bomb(victim: DockerSandbox, bystander: DockerSandbox) -> None:
    r = victim.exec(
        [
            "python3",
            "-c",
            "import os\nwhile True:\n    try:\n        os.fork()\n"
            "    except OSError:\n        pass",
        ],
        timeout=3,
    )
    assert r.timed_out and r.exit_code == 137
    procs = victim.exec("ls -d /proc/[0-9]* | wc -l", timeout=10)
    assert int(procs.stdout) < 12, procs  # the bomb's processes are gone
    _still_usable(victim)


def test_shell_fork_bomb_hits_the_pids_limit(
    victim: DockerSandbox, bystander: DockerSandbox
) -> None:
    r = victim.exec(
        "bomb() { bomb | bomb & }; bomb; sleep 2; ls -d /proc/[0-9]* | wc -l", timeout=4
    )
    counted = [int(x) for x in r.stdout.split() if x.isdigit()]
    assert not counted or counted[-1] <= victim.config.pids
    _still_usable(victim)


def test_memory_bomb_is_oom_killed(victim: DockerSandbox, bystander: DockerSandbox) -> None:
    r = victim.exec(
        ["python3", "-c", "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 2**20))"],
        timeout=30,
    )
    assert r.oom_killed and r.exit_code == 137 and not r.timed_out, r
    _still_usable(victim)


def test_disk_fill_stops_at_the_tmpfs_size(victim: DockerSandbox, bystander: DockerSandbox) -> None:
    # one huge file: stopped by the file size limit (SIGXFSZ) at the tmpfs size
    r = victim.exec("head -c 400M /dev/zero > /work/big; echo rc=$?; du -sm /work", timeout=60)
    assert "rc=0" not in r.stdout and "File size limit exceeded" in r.stderr, r
    assert int(r.stdout.split()[-2]) <= 256
    victim.exec("rm -f /work/big")
    # many smaller files: stopped by the size of the tmpfs
    r = victim.exec(
        "for i in 1 2 3; do head -c 100M /dev/zero > /work/f$i || echo failed; done; du -sm /work",
        timeout=60,
    )
    assert "failed" in r.stdout and "No space left" in r.stderr, r
    assert int(r.stdout.split()[-2]) <= 256
    r = victim.exec("head -c 100M /dev/zero > /tmp/big; echo rc=$?", timeout=60)
    assert "rc=1" in r.stdout and "No space left" in r.stderr, r
    victim.exec("rm -f /work/f* /tmp/big")
    _still_usable(victim)


def test_infinite_loop_times_out(victim: DockerSandbox, bystander: DockerSandbox) -> None:
    t0 = time.monotonic()
    r = victim.exec(["python3", "-c", "while True: pass"], timeout=1.5)
    assert r.timed_out and r.exit_code == 137 and r.duration_s >= 1.4
    assert time.monotonic() - t0 < 30  # a hang guard: an unkilled loop never ends
    _still_usable(victim)


def test_gigabytes_of_output(victim: DockerSandbox, bystander: DockerSandbox) -> None:
    r = victim.exec("head -c 2G /dev/zero | tr '\\0' x", timeout=60)
    assert r.exit_code == 0 and r.output_truncated and not r.timed_out, r.describe()
    assert len(r.stdout) <= victim.config.output_limit + 100
    r = victim.exec("yes flood", timeout=2)  # unbounded output until the timeout
    assert r.timed_out and r.output_truncated
    assert len(r.stdout) <= victim.config.output_limit + 100
    _still_usable(victim)


def test_sleeping_past_the_timeout(victim: DockerSandbox, bystander: DockerSandbox) -> None:
    r = victim.exec("trap '' TERM INT HUP; sleep 100", timeout=1)
    assert r.timed_out and 0.9 <= r.duration_s < 60  # < 60: a hang guard (it would sleep 100 s)
    left = victim.exec("cat /proc/[0-9]*/cmdline | tr '\\0' ' '").stdout
    assert "sleep 100" not in left


# ---------------------------------------------------------------------------------- host access
def test_cannot_read_host_files_or_environment(
    docker_client: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"host-secret-{os.getpid()}"
    (tmp_path / "secret.txt").write_text(secret)
    monkeypatch.setenv("ENVKIT_TEST_SECRET", secret)
    with DockerSandbox() as sb:  # made while the host process has the secret in its env
        r = sb.exec(
            f"cat {tmp_path}/secret.txt; env; cat /proc/1/environ; cat /proc/*/environ; "
            "cat /etc/shadow; ls /root /home; cat /proc/self/mountinfo",
            timeout=10,
        )
        assert secret not in r.stdout + r.stderr
        assert "No such file" in r.stderr and "Permission denied" in r.stderr
        assert str(tmp_path) not in r.stdout and "/work/main" not in r.stdout


@pytest.mark.parametrize("path", ["/etc/evil", "/usr/bin/evil", "/evil", "/var/evil", "/home/e"])
def test_cannot_write_outside_the_work_dir(victim: DockerSandbox, path: str) -> None:
    r = victim.exec(f"echo x > {path}", timeout=10)
    assert r.exit_code != 0 and ("Read-only" in r.stderr or "Permission denied" in r.stderr)
    assert victim.exec("echo ok > /work/f && echo ok > /tmp/f && cat /work/f").stdout == "ok\n"


def test_no_privilege_escalation(victim: DockerSandbox) -> None:
    status = victim.exec("grep -E '^(Uid|CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status")
    fields = dict(line.split(":\t") for line in status.stdout.splitlines())
    assert fields["Uid"].split()[0] == "1000"
    assert fields["CapEff"] == fields["CapPrm"] == fields["CapBnd"] == "0000000000000000"
    assert fields["NoNewPrivs"] == "1"
    setuid = victim.exec("find / -xdev -perm /6000 -type f 2>/dev/null", timeout=30)
    assert setuid.stdout == ""
    r = victim.exec(["python3", "-c", "import os; os.setuid(0)"])
    assert r.exit_code == 1 and "PermissionError" in r.stderr
    assert victim.exec("su -c id root </dev/null", timeout=10).exit_code != 0
    assert victim.exec("unshare -r id", timeout=10).exit_code != 0
    assert victim.exec("mount -t tmpfs none /mnt", timeout=10).exit_code != 0
    # a setuid bit set by the user gives nothing: no-new-privileges and no root-owned file
    r = victim.exec("cp /bin/id /work/myid && chmod u+s /work/myid && /work/myid -u")
    assert r.stdout.strip() == "1000"


def test_cannot_reach_the_docker_socket(victim: DockerSandbox) -> None:
    r = victim.exec(
        "ls -la /var/run/docker.sock /run/docker.sock; find / -xdev -type s 2>/dev/null"
    )
    assert "docker.sock" not in r.stdout and r.exit_code != 0
    code = (
        "import socket\ns = socket.socket(socket.AF_UNIX)\n"
        "try:\n s.connect('/var/run/docker.sock'); print('CONNECTED')\n"
        "except OSError as e:\n print(type(e).__name__)"
    )
    assert victim.exec(["python3", "-c", code]).stdout == "FileNotFoundError\n"


def test_cannot_touch_the_supervisor_or_init(victim: DockerSandbox) -> None:
    # envkit's supervisor is not dumpable: its fds and memory are closed to the command
    r = victim.exec("ls /proc/$PPID/fd; cat /proc/$PPID/environ; kill -9 1; echo rc=$?")
    assert "Permission denied" in r.stderr and "rc=1" in r.stdout
    # the supervisor runs as another uid: `kill -9 -1` reaches only the command's own processes
    r = victim.exec("sleep 50 & kill -9 -1; echo survived; kill -STOP $PPID; echo rc=$?")
    assert r.stdout == "survived\nrc=1\n" and r.exit_code == 0, r
    _still_usable(victim)


# ---------------------------------------------------------------------------------- isolation
def test_other_sandboxes_are_unaffected(hostile_pool: SandboxPool) -> None:
    with hostile_pool.acquire(timeout=60) as a, hostile_pool.acquire(timeout=60) as b:
        assert a is not b
        b.write_files({"mine.txt": "b's"})
        done = {}

        def long_task() -> None:
            done["r"] = b.exec("sleep 2; echo b-finished; cat mine.txt", timeout=20)

        t = threading.Thread(target=long_task)
        t.start()
        time.sleep(0.5)
        seen = a.exec("cat /proc/[0-9]*/cmdline | tr '\\0' ' '; ls /work").stdout
        assert "sleep 2" not in seen and "mine.txt" not in seen
        a.exec("kill -9 -1")
        a.exec(["python3", "-c", "x = bytearray(2**30)"], timeout=20)
        a.exec(
            ["python3", "-c", "import os\nwhile True:\n try: os.fork()\n except OSError: pass"],
            timeout=2,
        )
        t.join()
        assert done["r"].stdout == "b-finished\nb's" and done["r"].ok


def test_background_processes_do_not_outlive_the_episode(docker_client: Any) -> None:
    with SandboxPool(size=1) as pool:
        with pool.acquire() as sb:
            first = sb.container_id
            sb.exec(
                "nohup sleep 1001 >/dev/null 2>&1 & (setsid sleep 1002 &) ; "
                "env -i sh -c 'sleep 1003 &' ; python3 -c \"import os\nif os.fork() == 0:\n"
                " os.setsid()\n if os.fork() == 0:\n  os.execvp('sleep', ['sleep', '1004'])\" ;"
                "echo f > /work/f; echo t > /tmp/t; echo s > /dev/shm/s; ipcmk -M 4096",
                timeout=10,
            )
            assert "sleep 100" in sb.exec("cat /proc/[0-9]*/cmdline | tr '\\0' ' '").stdout
        with pool.acquire() as sb:
            assert sb.container_id == first  # the same warm container, cleaned
            procs = sb.exec("cat /proc/[0-9]*/cmdline | tr '\\0' ' '").stdout
            assert "sleep 100" not in procs
            files = sb.exec("ls -A /work /tmp /dev/shm; ipcs -m | grep -c 0x || true").stdout
            assert files.split() == ["/dev/shm:", "/tmp:", "/work:", "0"], files


def test_hostile_code_cannot_cause_infra_errors(victim: DockerSandbox) -> None:
    """A model must not be able to turn its failure into an ``infra_error`` outcome."""
    attacks = [
        "kill -9 -1",
        "kill -9 $PPID",
        "exec 1>&-; exec 2>&-; sleep 0.1",
        "python3 -c 'import os; os.closerange(0, 1000)'",
        "printf 'ENVKIT1\\nok=1\\n\\n'",
    ]
    for attack in attacks:
        try:
            victim.exec(attack, timeout=5)
        except InfraError as e:  # pragma: no cover - the failure being tested
            pytest.fail(f"{attack!r} raised {e!r}")
        _still_usable(victim)
