"""An OpenEnv env from a local Docker image (built FROM envkit-sandbox:latest, never pulled)."""

from __future__ import annotations

import subprocess

import pytest

import envkit
from envkit.errors import InfraError
from envkit.policies import CallablePolicy

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _containers(name: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def test_an_image_is_played_then_its_container_is_removed(image_env) -> None:  # type: ignore[no-untyped-def]
    from openenv_policies import bisect_guesser

    env = image_env
    name = env.server.container
    assert name and _containers(name) == [name]
    # the container publishes its port on 127.0.0.1 only and carries the sandbox owner labels
    labels = subprocess.run(
        ["docker", "inspect", "--format", "{{json .Config.Labels}}", name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"envkit.owner_pid"' in labels
    groups = envkit.collect(env, CallablePolicy(bisect_guesser), seeds=[3], progress=False)
    assert groups[0].trajectories[0].reward == 1.0

    env.reset(seed=1)
    subprocess.run(["docker", "kill", name], capture_output=True, check=True)  # dies mid-episode
    with pytest.raises(InfraError):
        env.step("50")
    env.close()
    assert env.server.process is None and _containers(name) == []
