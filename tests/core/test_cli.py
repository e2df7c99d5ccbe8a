"""The ``envkit`` command line through typer's runner and as real subprocesses."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from core_support import GlobalRandomEnv
from typer.testing import CliRunner

import envkit
from envkit.cli.main import app, parse_kwargs
from envkit.types import TrajectoryGroup, read_jsonl

runner = CliRunner()


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.replace("│", " ").split())


def _command_paths() -> list[list[str]]:
    paths: list[list[str]] = [[]]

    def walk(cmd: object, prefix: list[str]) -> None:
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(typer.main.get_command(app), [])
    return paths


COMMANDS = _command_paths()


def test_the_core_commands_exist() -> None:
    assert {"list", "info", "check", "eval"} <= {p[0] for p in COMMANDS if p}


def _click_command(path: list[str]) -> click.Command:
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    return cmd


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "envkit")
def test_help_for_every_command(path: list[str]) -> None:
    """Every command's --help works and shows its own summary, options and subcommands."""
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "250", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert out.startswith("Usage: "), out[:200]
    assert " ".join(path) in out.split("[OPTIONS]")[0]
    cmd = _click_command(path)
    if cmd.help:
        summary = flat(cmd.help.split("\n\n")[0])
        assert summary in out
    options = [o for p in cmd.params if not getattr(p, "hidden", False) for o in p.opts]
    assert [o for o in options if o.startswith("--") and o not in out] == []
    subcommands = [n for n, c in getattr(cmd, "commands", {}).items() if not c.hidden]
    assert [n for n in subcommands if n not in out] == []


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage:" in result.output and "check" in result.output


def test_list() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "envkit/Arithmetic-v0" in out
    assert "Compute an integer expression" in out
    assert "CartPole" not in out
    everything = flat(runner.invoke(app, ["list", "--all"]).output)
    assert "CartPole-v1" in everything and "envkit/Arithmetic-v0" in everything


def test_info() -> None:
    result = runner.invoke(app, ["info", "Arithmetic-v0"])
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    for needle in ["envkit/Arithmetic-v0", "max_turns: 3", "tools: none", "AssistantTurn", "retry"]:
        assert needle in out


def test_check_passes() -> None:
    result = runner.invoke(
        app, ["check", "Arithmetic-v0", "--kwarg", "max_turns=2", "--seeds", "4,5"]
    )
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "all 7 checks passed" in out and "FAIL" not in out


def test_check_fails_on_a_broken_env(clean_registry: None) -> None:
    envkit.register("CliBroken-v0", entry_point=GlobalRandomEnv)
    result = runner.invoke(app, ["check", "CliBroken-v0"])
    assert result.exit_code == 1
    out = flat(result.output)
    assert "FAIL" in out and "two resets gave different observations" in out
    assert "check(s) failed" in flat(result.stderr)


@pytest.mark.parametrize("command", [["info"], ["check"], ["eval", "--model", "openai/x"]])
def test_unknown_env_ids_exit_2_with_suggestions(command: list[str]) -> None:
    result = runner.invoke(app, [command[0], "Arithmetc-v0", *command[1:]])
    assert result.exit_code == 2
    err = flat(result.stderr)
    assert "Did you mean: `Arithmetic`" in err and "envkit list" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["check", "Arithmetic-v0", "--kwarg", "max_turns"], "is not KEY=VALUE"),
        (["check", "Arithmetic-v0", "--seeds", "a,b"], "comma-separated integers"),
        (["eval", "Arithmetic-v0", "--model", "x", "--num-tasks", "0"], "--num-tasks"),
        (["eval", "Arithmetic-v0"], "--model"),
    ],
)
def test_bad_options_exit_2(args: list[str], needle: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert needle in flat(result.output + result.stderr)


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (
            ["a=1", "b=x", 'c="1"', "d=[1, 2]", "e=true", "f=a=b"],
            {"a": 1, "b": "x", "c": "1", "d": [1, 2], "e": True, "f": "a=b"},
        ),
        (None, {}),
    ],
)
def test_parse_kwargs(items: list[str] | None, expected: dict) -> None:
    assert parse_kwargs(items) == expected


# Values whose meaning differed between `-k` (JSON) and `--set` (YAML) before one parser.
SAME_MEANING = {
    "lr": ("2e-4", 2e-4),  # YAML: the string '2e-4'
    "clock": ("1:30", "1:30"),  # YAML: 90
    "code": ("007", "007"),  # YAML: 7
    "flag": ("yes", "yes"),  # YAML: True
    "ops": ("+*", "+*"),
    "nums": ("[1, 2]", [1, 2]),
    "quoted": ('"1"', "1"),
    "flow": ("{t: 1:30, n: 2}", {"t": "1:30", "n": 2}),
}


def test_one_key_value_meaning_across_the_cli() -> None:
    from envkit.cli.train import _kwargs
    from envkit.trainers.config import GRPOConfig

    items = [f"{key}={text}" for key, (text, _) in SAME_MEANING.items()]
    expected = {key: value for key, (_, value) in SAME_MEANING.items()}
    assert parse_kwargs(items) == expected  # envkit check/eval -k
    assert _kwargs(items) == expected  # envkit train -k
    # envkit train --set: the free-form env_kwargs field keeps the values as parsed.
    flow = "{" + ", ".join(f"{k}: {t}" for k, (t, _) in SAME_MEANING.items()) + "}"
    assert GRPOConfig().override([f"env_kwargs={flow}"]).env_kwargs == expected
    assert GRPOConfig().override(["learning-rate=2e-4"]).learning_rate == 2e-4


@pytest.mark.parametrize(
    ("items", "needle"),
    [
        (["max_turns"], "is not KEY=VALUE (e.g. --kwarg max_turns=2)"),
        (["=2"], "is not KEY=VALUE"),
        (["max turns=2"], "is not a name"),
        (["a=1", "a=2"], "'a' is given twice"),
        (["a={b: [1"], "looks like a list or mapping but does not parse"),
    ],
)
def test_bad_key_values_say_what_is_wrong(items: list[str], needle: str) -> None:
    from envkit.cli.train import _kwargs

    with pytest.raises(typer.BadParameter, match=re.escape(needle)):
        parse_kwargs(items)
    with pytest.raises(typer.Exit):
        _kwargs(items)


# ------------------------------------------------------------------ real subprocesses
def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)


def test_python_m_envkit_cli_list(tmp_path: Path) -> None:
    proc = _run([sys.executable, "-m", "envkit.cli", "list"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "envkit/Arithmetic-v0" in proc.stdout


def test_console_script_check(tmp_path: Path) -> None:
    script = shutil.which("envkit") or str(Path(sys.executable).with_name("envkit"))
    proc = _run([script, "check", "Arithmetic-v0"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all 7 checks passed" in proc.stdout


def test_subprocess_unknown_id(tmp_path: Path) -> None:
    proc = _run([sys.executable, "-m", "envkit.cli", "info", "Arithmetc-v0"], tmp_path)
    assert proc.returncode == 2
    assert "Did you mean: `Arithmetic`" in flat(proc.stderr)


@pytest.mark.slow
def test_eval_with_the_tiny_random_model(tmp_path: Path) -> None:
    """End to end through a real (tiny, random) local transformers model."""
    out = tmp_path / "tiny.jsonl"
    result = runner.invoke(
        app,
        [
            "eval", "Arithmetic-v0", "--model", "tiny-random", "-n", "2", "-g", "2",
            "--max-tokens", "6", "--kwarg", "max_turns=1", "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output + repr(result.exception)
    groups = read_jsonl(out, TrajectoryGroup)
    assert [len(g) for g in groups] == [2, 2]
    trajectories = [t for g in groups for t in g]
    assert all(t.outcome in ("ok", "truncated") for t in trajectories), [
        t.error for t in trajectories
    ]
    assert all(t.reward is not None for t in trajectories)
    completion = trajectories[0].completions[0]
    assert completion.token_ids and 0 < len(completion.token_ids) <= 6
    assert "episodes 4" in flat(result.output)
