"""The Ray backend's settings in ``GRPOConfig`` and ``envkit train``: validated, and they reach
the run's ``RayRollout``."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from envkit.cli.train import app
from envkit.trainers import GRPOConfig
from envkit.trainers.episodes import BackgroundLoop, EpisodeSource

SERVER = {"policy_server": "http://127.0.0.1:9", "policy_server_model": "m"}


def test_ray_fields_reach_the_runs_backend() -> None:
    cfg = GRPOConfig(
        rollout_backend="ray", ray_workers_per_node=3, ray_max_retries=2, progress=False, **SERVER
    )
    loop = BackgroundLoop()
    source = EpisodeSource(
        "Arithmetic-v0",
        cfg,
        make_policy=lambda model: None,
        reward=None,
        stop_token_ids=[0],
        run_dir=None,
        loop=loop,
    )
    collect = source._collector()
    assert source._collector() == collect  # one backend for the whole run
    backend = source.ray_backend
    assert (backend.workers_per_node, backend.max_retries) == (3, 2)
    source.close()
    assert source.ray_backend is None
    loop.close()


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"ray_workers_per_node": 0}, "greater than or equal to 1"),
        ({"ray_max_retries": -1}, "greater than or equal to 0"),
    ],
)
def test_bad_ray_fields_are_refused(fields: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        GRPOConfig(rollout_backend="ray", **SERVER, **fields)


@pytest.mark.parametrize("field", ["ray_workers_per_node", "ray_max_retries"])
def test_ray_fields_need_the_ray_backend(field: str) -> None:
    with pytest.raises(ValueError, match=f'{field} is only used with rollout_backend="ray"'):
        GRPOConfig(**{field: 2})


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--ray-max-retries", "2"], 'ray_max_retries is only used with rollout_backend="ray"'),
        (["--ray-workers-per-node", "2"], "ray_workers_per_node is only used with"),
        (["--ray-workers-per-node", "0"], "--ray-workers-per-node"),
    ],
)
def test_cli_flags_reach_the_config(flags: list[str], needle: str) -> None:
    args = ["train", "Arithmetic-v0", "--model", "tiny-random", *flags]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert needle in " ".join(result.output.split())
