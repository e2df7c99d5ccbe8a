"""Fixtures of the sandbox tests: real containers on the real Docker daemon.

The ``docker`` tests need a running daemon and the sandbox image (``bash
scripts/install_docker.sh`` sets both up); without them they fail with the message that says how
to fix it, rather than being skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from envkit.sandbox import DockerSandbox, Sandbox, SandboxConfig
from envkit.sandbox.pool import SandboxPool
from envkit.sandbox.registry import make_sandbox


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """The shared docker-py client (fails with envkit's how-to-fix message if unusable)."""
    from envkit.sandbox.docker_client import docker_client as make_client
    from envkit.sandbox.image import image_exists

    client = make_client()
    assert image_exists(SandboxConfig().image, client), (
        "the sandbox image is missing: run `bash scripts/install_docker.sh` "
        "(or `envkit sandbox build`)"
    )
    return client


@pytest.fixture(scope="session")
def shared_sandbox(docker_client: Any) -> Iterator[DockerSandbox]:
    """One default sandbox for tests that only read or write their own files."""
    sb = DockerSandbox()
    yield sb
    sb.close()


@pytest.fixture(scope="session")
def hostile_pool(docker_client: Any) -> Iterator[SandboxPool]:
    """A pool for tests that abuse their sandbox: it is scrubbed (or replaced) after each."""
    pool = SandboxPool(SandboxConfig(), size=2)
    pool.start()
    yield pool
    pool.close()


@pytest.fixture
def victim(hostile_pool: SandboxPool) -> Iterator[DockerSandbox]:
    """A clean sandbox from the hostile pool for one test."""
    with hostile_pool.acquire(timeout=60) as sb:
        yield sb


@pytest.fixture(scope="session")
def container_state(docker_client: Any) -> Callable[[str], dict[str, Any] | None]:
    """``container_state(id)``: Docker's State of a container, or None if it no longer exists."""
    import docker.errors

    def state(container_id: str) -> dict[str, Any] | None:
        try:
            return docker_client.api.inspect_container(container_id)["State"]
        except docker.errors.NotFound:
            return None

    return state


BACKENDS = [pytest.param("docker", marks=pytest.mark.docker), "local"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each built-in backend in turn. Docker fails with its how-to-fix message when unusable;
    bubblewrap is skipped, with the reason, where it cannot create namespaces."""
    if request.param == "docker":
        request.getfixturevalue("docker_client")
    else:
        from envkit.sandbox.local_sandbox import bwrap_problem

        problem = bwrap_problem()
        if problem:
            pytest.skip(f"bubblewrap cannot run here: {problem}")
    return str(request.param)


@pytest.fixture
def any_sandbox(backend: str) -> Iterator[Sandbox]:
    """A fresh sandbox of ``backend`` for one hostile test."""
    sb = make_sandbox(backend, SandboxConfig())
    try:
        yield sb
    finally:
        sb.close()
