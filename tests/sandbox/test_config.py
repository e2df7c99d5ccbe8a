"""SandboxConfig: hardened defaults, documented fields, and validation errors that teach."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from envkit.sandbox import ExecResult, Mount, SandboxConfig
from envkit.sandbox.config import parse_size
from envkit.sandbox.docker_sandbox import host_config_kwargs


def test_every_field_is_documented() -> None:
    for name, field in SandboxConfig.model_fields.items():
        assert field.description and len(field.description) > 15, name
    for name, field in ExecResult.model_fields.items():
        assert field.description, name


def test_defaults_are_hardened() -> None:
    kw = host_config_kwargs(SandboxConfig())
    assert kw["network_mode"] == "none"
    assert kw["cap_drop"] == ["ALL"]
    assert kw["security_opt"] == ["no-new-privileges:true"]
    assert kw["read_only"] is True
    assert kw["mem_limit"] == kw["memswap_limit"] == 512 * 2**20
    assert kw["pids_limit"] == 256
    assert kw["nano_cpus"] == 10**9
    assert kw["ipc_mode"] == "private"
    assert kw["init"] is True and kw["auto_remove"] is True
    assert {u.name for u in kw["ulimits"]} == {"nofile", "fsize", "core"}
    assert "size=268435456" in kw["tmpfs"]["/work"] and "nosuid" in kw["tmpfs"]["/work"]
    assert kw["mounts"] == []
    assert SandboxConfig().user == "1000:1000"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(4096, 4096), ("512m", 512 * 2**20), ("1g", 2**30), ("64KiB", 64 * 1024), ("1.5k", 1536)],
)
def test_parse_size(value: int | str, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["lots", "-5m", 0, "12q", True])
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"user": "root"}, "root"),
        ({"user": "0:0"}, "root"),
        ({"user": "alice"}, "numeric"),
        ({"network": "host"}, "host"),
        ({"network": "container:abc"}, "network stack"),
        ({"memory": "128m"}, "tmpfs"),
        ({"user": "65534:65534"}, "different uids"),
        ({"workdir": "/proc"}, "workdir"),
        ({"cpus": 0}, "greater than 0"),
        ({"colour": "red"}, "Extra inputs"),
    ],
)
def test_invalid_configs_say_why(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SandboxConfig(**kwargs)  # type: ignore[arg-type]


def test_network_opt_in_is_explicit() -> None:
    assert not SandboxConfig().network_enabled
    cfg = SandboxConfig(network="bridge")
    assert cfg.network_enabled and host_config_kwargs(cfg)["network_mode"] == "bridge"


def test_mounts_are_read_only_by_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = SandboxConfig(mounts=[Mount(source=str(tmp_path), target="/data")])
    (mount,) = host_config_kwargs(cfg)["mounts"]
    assert mount["ReadOnly"] is True and mount["Target"] == "/data"


def test_docker_socket_cannot_be_mounted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match="Docker socket"):
        Mount(source="/var/run/docker.sock", target="/var/run/docker.sock")
    path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    try:
        with pytest.raises(ValidationError, match="socket"):
            Mount(source=str(path), target="/x")
    finally:
        server.close()
    with pytest.raises(ValidationError, match="absolute"):
        Mount(source="relative/dir", target="/x")


def test_exec_result_helpers() -> None:
    r = ExecResult(exit_code=137, timed_out=True, duration_s=2.0, output_truncated=True)
    assert not r.ok
    assert "timed out" in r.describe() and "truncated" in r.describe()
    assert ExecResult(exit_code=0, stdout="a", stderr="b").output == "ab"
