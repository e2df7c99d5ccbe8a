"""``envkit sandbox doctor``: what the sandboxes need here, what is missing, and the fix."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Literal

from envkit.sandbox.config import SandboxConfig
from envkit.sandbox.errors import SandboxError

__all__ = ["Check", "run_checks"]

Status = Literal["ok", "warn", "fail"]


@dataclass
class Check:
    """One line of the doctor's report."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def _docker_checks(config: SandboxConfig, smoke: bool) -> list[Check]:
    from envkit.sandbox.docker_client import daemon_url, docker_client
    from envkit.sandbox.image import image_exists

    checks: list[Check] = []
    try:
        client = docker_client()
    except SandboxError as e:
        msg = str(e)
        detail, _, fix = msg.partition(". ")
        return [Check("docker daemon", "fail", detail, fix)]
    info = client.info()
    checks.append(
        Check("docker daemon", "ok", f"{daemon_url()} (server {info.get('ServerVersion')})")
    )
    missing = [
        k for k in ("MemoryLimit", "SwapLimit", "PidsLimit", "CpuCfsQuota") if not info.get(k)
    ]
    if missing:
        checks.append(
            Check(
                "cgroup limits",
                "warn",
                f"the daemon cannot enforce: {', '.join(missing)}",
                "enable the memory/swap cgroup controllers (kernel: cgroup_enable=memory "
                "swapaccount=1) and restart dockerd",
            )
        )
    else:
        checks.append(Check("cgroup limits", "ok", "memory, swap, pids and CPU limits enforced"))
    if not image_exists(config.image, client):
        checks.append(
            Check(
                "sandbox image",
                "fail",
                f"{config.image} is not built",
                "envkit sandbox build   (or: sudo bash scripts/install_docker.sh)",
            )
        )
        return checks
    checks.append(Check("sandbox image", "ok", config.image))
    if smoke:
        checks.append(_smoke(config))
    from envkit.sandbox import reaper

    orphans = [
        c.name for c in reaper.list_containers(client) if reaper.owner_alive(c.labels) is False
    ]
    if orphans:
        checks.append(
            Check(
                "leftover containers",
                "warn",
                f"{len(orphans)} sandbox containers whose owner process is gone",
                "envkit sandbox cleanup",
            )
        )
    else:
        checks.append(Check("leftover containers", "ok", "none"))
    return checks


def _smoke(config: SandboxConfig) -> Check:
    from envkit.sandbox.docker_sandbox import DockerSandbox

    try:
        with DockerSandbox(config) as sb:
            r = sb.exec(["python3", "-c", "import os; print(os.getuid())"], timeout=20)
    except SandboxError as e:
        return Check("sandbox run", "fail", str(e), "see the message; then envkit sandbox doctor")
    if r.exit_code != 0 or r.stdout.strip() == "0":
        return Check(
            "sandbox run",
            "fail",
            f"python3 in the sandbox failed: {r.describe()} {r.stderr[-300:]}",
            "envkit sandbox build --force",
        )
    return Check(
        "sandbox run", "ok", f"python3 runs as uid {r.stdout.strip()} in {r.duration_s:.2f}s"
    )


def run_checks(config: SandboxConfig | None = None, *, smoke: bool = True) -> list[Check]:
    """Checks the Docker backend, the image, the bubblewrap backend and the build tools.

    Args:
        config: The config whose image is checked (default ``SandboxConfig()``).
        smoke: Start a sandbox and run python3 in it.
    """
    from envkit.sandbox.local_sandbox import bwrap_problem

    config = config or SandboxConfig()
    checks = _docker_checks(config, smoke)
    problem = bwrap_problem()
    if problem:
        checks.append(
            Check(
                "bubblewrap (local backend)",
                "warn",
                problem.split(". ")[0],
                "sudo apt-get install bubblewrap",
            )
        )
    else:
        checks.append(Check("bubblewrap (local backend)", "ok", shutil.which("bwrap") or "bwrap"))
    if shutil.which("debootstrap") is None:
        checks.append(
            Check(
                "debootstrap",
                "warn",
                "missing: `envkit sandbox build` cannot make the default image",
                "sudo apt-get install debootstrap   (or build with --dockerfile)",
            )
        )
    elif os.geteuid() != 0:
        checks.append(
            Check(
                "debootstrap",
                "warn",
                "present, but building needs root",
                "sudo envkit sandbox build",
            )
        )
    else:
        checks.append(Check("debootstrap", "ok", "present (needed only to build the image)"))
    return checks
