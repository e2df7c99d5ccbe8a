"""`envkit sandbox build` (idempotent, user Dockerfiles) and `envkit sandbox doctor`."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from envkit.cli.main import app
from envkit.sandbox import DockerSandbox, SandboxConfig
from envkit.sandbox.image import debian_mirror, image_exists

pytestmark = pytest.mark.docker
runner = CliRunner()


def flat(text: str) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(text.split())


def test_build_is_idempotent(docker_client: Any) -> None:
    result = runner.invoke(app, ["sandbox", "build"])
    assert result.exit_code == 0, result.output
    assert "up to date" in flat(result.output)  # nothing rebuilt (its speed: bench_sandbox.py)


def test_build_from_a_user_dockerfile(docker_client: Any, tmp_path: Any) -> None:
    tag = "envkit-sandbox-test-user:latest"
    (tmp_path / "Dockerfile").write_text(
        "FROM envkit-sandbox:latest\nUSER root\nRUN echo from-user-image > /opt/marker\n"
    )
    try:
        result = runner.invoke(
            app, ["sandbox", "build", "-f", str(tmp_path / "Dockerfile"), "--tag", tag]
        )
        assert result.exit_code == 0, result.output
        assert image_exists(tag, docker_client)
        with DockerSandbox(SandboxConfig(image=tag)) as sb:
            assert sb.exec("cat /opt/marker; id -u").stdout == "from-user-image\n1000\n"
    finally:
        for t in (tag, "envkit-sandbox-test-user-userbase:latest"):
            if image_exists(t, docker_client):
                docker_client.api.remove_image(t, force=True)


def test_build_reports_a_broken_dockerfile(docker_client: Any, tmp_path: Any) -> None:
    (tmp_path / "Dockerfile").write_text("FROM envkit-sandbox:latest\nRUN exit 3\n")
    result = runner.invoke(
        app,
        [
            "sandbox",
            "build",
            "-f",
            str(tmp_path / "Dockerfile"),
            "--tag",
            "envkit-sandbox-broken:latest",
        ],
    )
    assert result.exit_code == 1 and "failed" in flat(result.output)
    result = runner.invoke(app, ["sandbox", "build", "-f", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "does not exist" in flat(result.output)


def test_doctor_reports_a_working_setup(docker_client: Any) -> None:
    result = runner.invoke(app, ["sandbox", "doctor"])
    assert result.exit_code == 0, result.output
    for check in ("docker daemon", "sandbox image", "sandbox run", "bubblewrap"):
        assert check in flat(result.output)


def test_doctor_says_how_to_fix_a_missing_image(docker_client: Any) -> None:
    result = runner.invoke(app, ["sandbox", "doctor", "--image", "envkit-missing:0", "--no-smoke"])
    assert result.exit_code == 1
    assert "not built" in flat(result.output) and "envkit sandbox build" in flat(result.output)


def test_doctor_without_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from envkit.sandbox.docker_client import forget_clients

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    forget_clients()
    try:
        result = runner.invoke(app, ["sandbox", "doctor"])
    finally:
        monkeypatch.delenv("DOCKER_HOST")
        forget_clients()
    assert result.exit_code == 1 and "dockerd" in flat(result.output)


def test_mirror_is_read_from_apt() -> None:
    assert debian_mirror().startswith("http")
