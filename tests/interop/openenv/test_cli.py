"""``envkit check``, ``eval``, ``train`` on OpenEnv envs (``--import`` registers them)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import pytest
from typer.testing import CliRunner

from envkit.cli.main import app

runner = CliRunner()
REGISTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openenv_registry.py")


@pytest.fixture(scope="module")
def registered(guess_server: str, calc_server: str) -> Iterator[None]:
    """The env vars ``openenv_registry`` reads; its ids leave the registry afterwards."""
    os.environ["OPENENV_TEST_GUESS_URL"] = guess_server
    os.environ["OPENENV_TEST_CALC_URL"] = calc_server
    yield
    for name in ("OPENENV_TEST_GUESS_URL", "OPENENV_TEST_CALC_URL"):
        os.environ.pop(name, None)
    for env_id in ("envkit/OpenEnvGuessCli-v0", "envkit/OpenEnvCalcCli-v0"):
        gym.registry.pop(env_id, None)


@pytest.mark.parametrize("env_id", ["OpenEnvGuessCli-v0", "OpenEnvCalcCli-v0"])
def test_envkit_check_passes_on_openenv_envs(env_id: str, registered: None) -> None:
    result = runner.invoke(app, ["check", env_id, "--import", REGISTRY, "--seeds", "0,1"])
    assert result.exit_code == 0, result.output
    assert "checks passed" in result.output


def test_envkit_info_lists_the_mcp_tools(registered: None) -> None:
    result = runner.invoke(app, ["info", "OpenEnvCalcCli-v0", "--import", REGISTRY])
    assert result.exit_code == 0, result.output
    assert "tools: add, submit" in result.output


@pytest.mark.slow
def test_one_train_step_and_eval_on_tiny_random(registered: None, tmp_path: Path) -> None:
    import torch

    threads = torch.get_num_threads()
    out = tmp_path / "run"
    args = [
        "train",
        "OpenEnvGuessCli-v0",
        "--import",
        REGISTRY,
        "--model",
        "tiny-random",
        "--steps",
        "1",
        "--out",
        str(out),
        "--group-size",
        "2",
        "--groups-per-step",
        "1",
        "--max-new-tokens",
        "4",
        "--set",
        "torch_threads=1",
        "--set",
        "progress=false",
    ]
    try:
        trained = runner.invoke(app, args)
        evaluated = runner.invoke(
            app,
            [
                "eval",
                "OpenEnvGuessCli-v0",
                "--import",
                REGISTRY,
                "--model",
                "tiny-random",
                "--num-tasks",
                "2",
                "--max-tokens",
                "4",
            ],
        )
    finally:
        torch.set_num_threads(threads)
    assert trained.exit_code == 0, trained.output
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1]
    assert evaluated.exit_code == 0, evaluated.output
    assert "OpenEnvGuessCli-v0" in evaluated.output
