"""One registry chooses sandbox backends, for pools and environments alike, plugins included;
both built-in backends satisfy the ``Sandbox`` contract that pools rely on."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from envkit.sandbox import DockerSandbox, LocalSandbox, Sandbox, SandboxConfig
from envkit.sandbox.pool import SandboxPool
from envkit.sandbox.registry import (
    ENTRY_POINT_GROUP,
    backend_names,
    check_backend,
    get_backend,
    make_sandbox,
    register_backend,
)
from envkit.sandbox.supervised import RawReply, SupervisedSandbox


class EchoSandbox(SupervisedSandbox):
    """A plugin backend: its "supervisor" answers every run with the command's argv."""

    kind = "echo"

    def _transport(self, spec: dict[str, Any], payload: Any, *, deadline: float, max_reply: int):
        rid = spec["rid"].encode().hex().encode()
        if spec["op"] == "scrub":
            return RawReply(b"ENVKIT1\nok=1\nrid=x%s\nout_len=0\nerr_len=0\n\n" % rid, b"", 0)
        out = " ".join(spec.get("argv", [])).encode()
        head = b"ENVKIT1\nexit_code=0\nok=1\nrid=x%s\nout_len=%d\nerr_len=0\n\n"
        return RawReply(head % (rid, len(out)) + out, b"", 0)

    def _destroy(self) -> None:
        pass

    def alive(self) -> bool:
        return not self.closed


@pytest.fixture
def echo_backend() -> Any:
    register_backend("echo_test", EchoSandbox, replace=True)
    yield "echo_test"
    from envkit.sandbox import registry

    registry._REGISTERED.pop("echo_test", None)


def test_builtin_backends_and_the_contract() -> None:
    assert backend_names()[:2] == ["docker", "local"]
    assert get_backend("docker") is DockerSandbox and get_backend("local") is LocalSandbox
    for cls in (DockerSandbox, LocalSandbox, EchoSandbox):
        for member in ("closed", "broken", "uses", "created_at", "alive", "reset", "exec"):
            assert hasattr(cls, member) or member in ("uses", "created_at"), (cls, member)
    sb = EchoSandbox()
    assert isinstance(sb, Sandbox)  # runtime-checkable: the whole contract, attributes included


def test_unknown_backend_lists_the_names() -> None:
    with pytest.raises(ValueError, match=r"'docker'.*'local'.*register_backend"):
        check_backend("dokcer")
    with pytest.raises(ValueError, match="unknown sandbox backend 'dokcer'"):
        SandboxPool(backend="dokcer")
    with pytest.raises(ValueError, match=r"taken|exists"):
        register_backend("docker", EchoSandbox)


def test_pool_and_env_use_a_registered_backend(echo_backend: str) -> None:
    assert echo_backend in backend_names()
    assert isinstance(make_sandbox(echo_backend), EchoSandbox)
    with SandboxPool(size=1, backend=echo_backend) as pool, pool.acquire() as sb:
        assert isinstance(sb, EchoSandbox) and sb.uses == 1
        assert sb.exec(["hello", "plugin"]).stdout == "hello plugin"
    from envkit.environments.python_tools import PythonToolsEnv

    env = PythonToolsEnv(sandbox=echo_backend)
    assert env.pool.backend == echo_backend
    env.close()
    with pytest.raises(ValueError, match="unknown sandbox backend"):
        PythonToolsEnv(sandbox="nope")


def test_entry_point_group_is_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "envkit_echo_plugin-1.0.dist-info"
    dist.mkdir()
    meta = "Metadata-Version: 2.1\nName: envkit-echo-plugin\nVersion: 1.0\n"
    (dist / "METADATA").write_text(meta)
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nechoplug = tests.sandbox.test_registry:EchoSandbox\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "echoplug" in backend_names()
    sb = make_sandbox("echoplug", SandboxConfig())
    assert type(sb).__name__ == "EchoSandbox" and sb.exec(["x"]).stdout == "x"
    monkeypatch.undo()
    assert str(tmp_path) not in sys.path
