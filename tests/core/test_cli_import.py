"""``--import MODULE``: envs registered in a user's module are seen by env-taking commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from envkit.cli.main import app

runner = CliRunner()

MODULE = """
import envkit.environments as envs

envs.register_dataset(
    "{env_id}",
    [{{"prompt": "What is 2 + {n}?", "answer": "{answer}"}} for _ in range(4)],
)
"""


def _write_module(folder: Path, name: str, env_id: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(MODULE.format(env_id=env_id, n=3, answer=5), encoding="utf-8")
    return path


@pytest.fixture
def user_module(tmp_path: Path, clean_registry: None) -> Iterator[Path]:
    """A module that registers a dataset env, removed from sys.modules afterwards."""
    name = f"user_envs_{os.getpid()}_{tmp_path.name}".replace("-", "_")
    path = _write_module(tmp_path, name, f"Imported{tmp_path.name[-6:].replace('-', '')}-v0")
    yield path
    sys.modules.pop(name, None)
    while str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))


def _env_id(path: Path) -> str:
    return "envkit/" + path.read_text().split('"')[1]


def _env_commands() -> list[str]:
    """Every command whose first argument is an env id (ENV_ID)."""
    names = []
    for name, cmd in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        params = [p for p in cmd.params if p.param_type_name == "argument"]
        if params and params[0].name in ("env_id", "env_ids"):
            names.append(name)
    return names


def test_every_env_taking_command_has_import() -> None:
    commands = _env_commands()
    assert {"info", "check", "eval", "train"} <= set(commands)
    for name in [*commands, "list"]:
        cmd = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
        assert "--import" in opts, f"envkit {name} lacks --import"


def test_without_import_the_error_names_the_option(user_module: Path) -> None:
    result = runner.invoke(app, ["check", _env_id(user_module)])
    assert result.exit_code == 2
    assert "--import MODULE" in " ".join(result.output.split())


def test_check_and_info_see_an_env_from_a_file(user_module: Path) -> None:
    env_id = _env_id(user_module)
    result = runner.invoke(app, ["check", env_id, "--import", str(user_module), "--seeds", "0"])
    assert result.exit_code == 0, result.output
    assert "checks passed" in result.output
    # a second --import of the same file in one process is a no-op, not a clash
    result = runner.invoke(app, ["info", env_id, "--import", str(user_module)])
    assert result.exit_code == 0, result.output
    assert env_id in result.output


def test_console_script_imports_from_the_working_directory(tmp_path: Path) -> None:
    """The `envkit` script does not put the working directory on sys.path; --import does."""
    _write_module(tmp_path, "my_envs", "FromCwd-v0")
    env = {**os.environ, "COLUMNS": "250"}
    script = Path(sys.executable).with_name("envkit")
    args = [str(script)] if script.exists() else [sys.executable, "-m", "envkit"]
    done = subprocess.run(
        [*args, "list", "--import", "my_envs"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "envkit/FromCwd-v0" in done.stdout


@pytest.mark.parametrize(
    ("arg", "needle"),
    [
        ("no_such_module_xyz", "no module named 'no_such_module_xyz'"),
        ("missing/file.py", "no such file"),
        ("", "needs a module name"),
    ],
)
def test_bad_imports_exit_2_and_say_why(arg: str, needle: str) -> None:
    result = runner.invoke(app, ["list", "--import", arg])
    assert result.exit_code == 2
    assert needle in " ".join(result.output.split())


def test_a_module_that_raises_shows_its_traceback(tmp_path: Path) -> None:
    path = tmp_path / "broken_envs.py"
    path.write_text("def f():\n    raise RuntimeError('bad registration')\n\nf()\n")
    result = runner.invoke(app, ["check", "X-v0", "--import", str(path)])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert "raised RuntimeError: bad registration" in out
    assert "broken_envs.py" in out and "line 2" in out  # the traceback points at the cause
    assert "broken_envs" not in sys.modules


def test_train_records_the_imports_and_resume_imports_them_again(
    user_module: Path, tmp_path: Path
) -> None:
    import gymnasium as gym

    env_id = _env_id(user_module)
    out = tmp_path / "run"
    common = ["--set", "torch_threads=1", "--set", "progress=false", "--set", "save_steps=1"]
    args = ["train", env_id, "--import", str(user_module), "--model", "tiny-random"]
    args += ["--steps", "1", "--group-size", "2", "--groups-per-step", "1"]
    args += ["--max-new-tokens", "2", "--out", str(out), *common]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "imports.json").read_text()) == [str(user_module.resolve())]

    # a new process would not know the env: forget it, as that process would
    del gym.registry[env_id]
    sys.modules.pop(user_module.stem, None)
    result = runner.invoke(app, ["train", "--resume", "--out", str(out), "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert env_id in gym.registry  # imported again from imports.json

    result = runner.invoke(
        app, ["train", "--resume", "--out", str(out), "--import", str(user_module)]
    )
    assert result.exit_code == 2
    assert "drop --import" in result.output
