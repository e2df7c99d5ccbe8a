"""The private docker-py members envkit uses are checked once, with a clear error (issue 17).

Each test removes one member from the real, installed docker-py (``monkeypatch`` restores it) and
uses a real client object; no container is made.
"""

from __future__ import annotations

import importlib.metadata
import io
from typing import Any

import docker
import pytest

from envkit.sandbox import DockerSandbox, channel
from envkit.sandbox.channel import DOCKER_PY_PRIVATE, check_docker_py
from envkit.sandbox.errors import IncompatibleDockerPyError


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real docker-py APIClient (never connected), with the once-per-class check forgotten."""
    monkeypatch.setattr(channel, "_VERIFIED", set())
    return docker.APIClient(base_url="unix:///nonexistent/docker.sock", version="1.43")


def test_the_installed_docker_py_has_every_member(api: Any) -> None:
    check_docker_py(api)
    assert type(api) in channel._VERIFIED
    listed = {name.split(".", 1)[1] for name in DOCKER_PY_PRIVATE if name.startswith("APIClient")}
    assert listed == set(channel._API_MEMBERS)


@pytest.mark.parametrize("member", ["_post_json", "_url", "_get_raw_response_socket"])
def test_a_missing_member_is_named_with_the_versions(
    api: Any, monkeypatch: pytest.MonkeyPatch, member: str
) -> None:
    monkeypatch.delattr(docker.api.client.APIClient, member)
    with pytest.raises(IncompatibleDockerPyError) as info:
        check_docker_py(api)
    message = str(info.value)
    assert f"docker.api.client.APIClient.{member} is missing" in message
    assert f"Installed: docker {importlib.metadata.version('docker')}" in message
    assert "Tested: docker 7.1.0" in message
    assert type(api) not in channel._VERIFIED


def test_docker_sandbox_checks_before_making_a_container(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(docker.api.client.APIClient, "_get_raw_response_socket")
    client = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.43")
    with pytest.raises(IncompatibleDockerPyError, match="_get_raw_response_socket is missing"):
        DockerSandbox(client=client)  # a daemon call would fail differently: none is reachable


def test_a_socket_wrapper_without_its_socket_is_named() -> None:
    with pytest.raises(IncompatibleDockerPyError, match="'_sock' socket of the BytesIO"):
        channel._raw_socket(io.BytesIO())
