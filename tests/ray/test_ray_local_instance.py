"""A local Ray instance that envkit starts itself leaves no process behind.

This module uses no test cluster (tests/ray's shared one may still run beside it): the
user-like script below starts its own instance (``ray.init()`` without an address; the script
first checks that this starts a new instance rather than joining a running one). Every process
of that instance inherits the script's environment, so a unique marker variable finds them all
in ``/proc/*/environ`` (the agents rename themselves ``ray::DashboardAgent`` /
``ray::RuntimeEnvAgent``, so their command lines no longer name the session).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

SCRIPT = """
from ray._private.services import canonicalize_bootstrap_address

import envkit
from envkit.policies import CallablePolicy

# ray.init() without an address must start a new instance here, not join a running cluster
# (tests/ray's shared cluster may be up: its address file is in its own temp dir).
assert canonicalize_bootstrap_address(None) is None, canonicalize_bootstrap_address(None)

groups = envkit.collect("Arithmetic-v0", CallablePolicy(lambda m, t: "0"), seeds=[1, 2],
                        group_size=2, progress=False, backend="ray")
print(sorted({t.outcome for g in groups for t in g}))
"""


def marked(mark: bytes) -> list[str]:
    """``pid name`` of the live processes whose environment holds ``mark``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if mark not in Path(f"/proc/{entry}/environ").read_bytes():
                continue
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] != "Z":
            found.append(f"{entry} {stat[stat.index('(') + 1 : stat.rindex(')')]}")
    return found


def test_collect_that_started_ray_leaves_no_process_behind(tmp_path: Path) -> None:
    mark = f"envkit-ray-leak-{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(
        ENVKIT_TEST_LEAK_MARK=mark,
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
    )
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "['truncated']"
    deadline = time.monotonic() + 5.0  # the kernel may take a moment to reap
    left = marked(mark.encode())
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = marked(mark.encode())
    assert left == [], f"processes of the script's Ray instance outlived it: {left}"
