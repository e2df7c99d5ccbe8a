"""Several envs in one GRPO run: ``EnvMixture``, its sampler, per-env metrics, and the CLI form.

The sampler and validation tests need no model; the training tests run 1-2 real steps of TRL +
peft on the tiny random model with Arithmetic-v0 and Countdown-v0 in one run.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from envkit.trainers import EnvMixture
from envkit.trainers.mixture import parse_env_weight
from envkit.trainers.run_dir import RunDir
from envkit.types import TrajectoryGroup, read_jsonl

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from train_support import even_tokens, tiny_config  # noqa: E402

ARITH, COUNT = "envkit/Arithmetic-v0", "envkit/Countdown-v0"


@pytest.fixture(autouse=True)
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------------- sampler, no model
def test_mixture_frequencies_follow_the_weights() -> None:
    mix = EnvMixture([("Arithmetic-v0", 3.0), ("Countdown-v0", 1.0), ("GuessNumber-v0", 0.5)])
    n = 20_000
    counts = Counter(mix.assign(n, seed=7))
    for i, p in enumerate(mix.probabilities):
        # binomial sd at n=20000 is <= 0.0036: 0.02 is > 5 sd of slack
        assert abs(counts[i] / n - p) < 0.02, (i, counts[i] / n, p)
    assert mix.probabilities == pytest.approx([3 / 4.5, 1 / 4.5, 0.5 / 4.5])


def test_assignment_is_deterministic_in_the_seed() -> None:
    mix = EnvMixture([("Arithmetic-v0", 1.0), ("Countdown-v0", 1.0)])
    again = EnvMixture(["Arithmetic-v0", "Countdown-v0"])
    assert mix.assign(200, seed=3) == again.assign(200, seed=3)
    assert mix.assign(200, seed=3) != mix.assign(200, seed=4)
    assert mix.assign(50, seed=3) == mix.assign(200, seed=3)[:50]  # a prefix: resume-stable


def test_kwargs_per_env_merge_over_shared_ones() -> None:
    mix = EnvMixture(
        [("Arithmetic-v0", 2, {"operators": "+"}), "Countdown-v0"],
        kwargs={"Countdown-v0": {"max_turns": 2}},
    )
    assert mix.env_kwargs(0, {"max_turns": 1}) == {"max_turns": 1, "operators": "+"}
    assert mix.env_kwargs(1, {"max_turns": 1}) == {"max_turns": 2}
    assert mix.spec()[0] == {"env": ARITH, "weight": 2.0, "kwargs": {"operators": "+"}}
    mix.check({"max_turns": 1})  # both envs can be made


@pytest.mark.parametrize(
    ("envs", "kwargs", "needle"),
    [
        ([("Arithmetic-v0", 0)], None, "finite number > 0"),
        ([("Arithmetic-v0", -1.0)], None, "finite number > 0"),
        ([("Arithmetic-v0", float("inf"))], None, "finite number > 0"),
        ([("Arithmetic-v0", float("nan"))], None, "finite number > 0"),
        ([("Arithmetic-v0", "heavy")], None, "a weight must be a number"),
        ([("Arithmetc-v0", 1.0)], None, "Did you mean: `Arithmetic`"),
        ([], None, "at least one env"),
        (["Arithmetic-v0", "envkit/Arithmetic-v0"], None, "in the mixture twice"),
        (["Arithmetic-v0"], {"Countdown-v0": {"max_turns": 1}}, "not in the mixture"),
        ([("Arithmetic-v0", 1, {}, "x")], None, "(env, weight, kwargs)"),
        ([42], None, "registered id or a factory"),
    ],
)
def test_bad_mixtures_fail_clearly(envs: list[Any], kwargs: Any, needle: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        EnvMixture(envs, kwargs=kwargs)
    assert needle in str(info.value)


def test_bad_kwargs_name_the_env() -> None:
    mix = EnvMixture(["Arithmetic-v0", "Countdown-v0"])
    with pytest.raises(ValueError, match="Countdown-v0 cannot be made with kwargs"):
        mix.check({"operators": "+"})  # an Arithmetic kwarg given to every env


def test_parse_env_weight() -> None:
    assert parse_env_weight("Arithmetic-v0:2") == ("Arithmetic-v0", 2.0)
    assert parse_env_weight("Arithmetic-v0") == ("Arithmetic-v0", None)
    assert parse_env_weight("envkit/rg:leg_counting-v0") == ("envkit/rg:leg_counting-v0", None)
    assert parse_env_weight("envkit/rg:leg_counting-v0:0.5") == ("envkit/rg:leg_counting-v0", 0.5)
    with pytest.raises(ValueError, match="finite number > 0"):
        parse_env_weight("Arithmetic-v0:0")


# ---------------------------------------------------------------------- training
def _groups(run: RunDir) -> list[TrajectoryGroup]:
    return [
        g
        for path in sorted((run.path / "trajectories").glob("*.jsonl"))
        for g in read_jsonl(path, TrajectoryGroup)
    ]


def test_mixture_trains_with_single_env_groups_and_per_env_metrics(tmp_path: Path) -> None:
    from envkit.trainers import GRPOTrainer, summarize_run

    out = tmp_path / "run"
    cfg = tiny_config(
        out,
        max_steps=2,
        save_steps=2,
        group_size=2,
        groups_per_step=4,
        max_new_tokens=4,
        env_kwargs={"max_turns": 1},
        kl_to_base_every=0,
        eval_every=2,
        eval_episodes=2,
    )
    mix = EnvMixture(
        [("Arithmetic-v0", 1.0, {"operators": "+"}), ("Countdown-v0", 1.0)],
        kwargs={"Countdown-v0": {"num_numbers": 3, "max_number": 10}},
    )
    with GRPOTrainer("tiny-random", mix, reward=even_tokens, config=cfg) as trainer:
        expected = mix.assign(8, cfg.seed)
        assert trainer.backend.train_dataset["envkit_env"] == expected
        trainer.train()
    run = RunDir(out)

    groups = _groups(run)
    assert len(groups) == 8
    for group, env_index in zip(groups, expected, strict=True):
        assert group.env_id == mix.names[env_index]
        assert {t.env_id for t in group.trajectories} == {group.env_id}  # one env per group
        assert len({t.seed for t in group.trajectories}) == 1
    assert {g.env_id for g in groups} == {ARITH, COUNT}, "seed 0 should draw both envs"

    rows = run.read_metrics()
    train = [r for r in rows if r["kind"] == "train"]
    for row in train:
        step_groups = groups[(row["step"] - 1) * 4 : row["step"] * 4]
        for env in ("Arithmetic-v0", "Countdown-v0"):
            played = [g for g in step_groups if g.env_id == f"envkit/{env}"]
            if not played:
                assert f"env/{env}/groups" not in row
                continue
            assert row[f"env/{env}/groups"] == len(played)
            assert row[f"env/{env}/episodes"] == 2 * len(played)
            rewards = [t.reward for g in played for t in g if t.reward is not None]
            assert row[f"env/{env}/reward/mean"] == pytest.approx(sum(rewards) / len(rewards))
            assert 0.0 <= row[f"env/{env}/groups/zero_variance_frac"] <= 1.0
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 2]
    for r in evals:
        assert r["eval/episodes"] == 4  # every env plays the eval_episodes seeds
        assert "eval/env/Arithmetic-v0/reward_mean" in r
        assert "eval/env/Countdown-v0/reward_mean" in r

    info = json.loads(run.run_info_path.read_text())
    assert info["env"] == f"{ARITH}:1 + {COUNT}:1"
    assert info["envs"][1] == {
        "env": COUNT,
        "weight": 1.0,
        "kwargs": {"num_numbers": 3, "max_number": 10},
    }
    summary = summarize_run(out)
    assert set(summary["envs"]) == {"Arithmetic-v0", "Countdown-v0"}
    assert sum(e["episodes"] for e in summary["envs"].values()) == 16

    from envkit.viewer.curves import run_charts

    reward_chart = run_charts(rows)[0]
    assert "env/Arithmetic-v0/reward/mean" in reward_chart.keys
    assert "eval/env/Countdown-v0/reward_mean" in reward_chart.keys


# ---------------------------------------------------------------------- CLI
def test_cli_trains_a_weighted_mixture_reports_it_and_resumes(tmp_path: Path) -> None:
    from envkit.cli.train import app

    runner = CliRunner()
    out = tmp_path / "run"
    args = [
        "train",
        "Arithmetic-v0:3",
        "Countdown-v0:1",
        "--model",
        "tiny-random",
        "-k",
        "max_turns=1",
        "-k",
        "Arithmetic-v0.operators=+",
        "-k",
        "envkit/Countdown-v0.num_numbers=3",
        "--steps",
        "1",
        "--out",
        str(out),
        "--group-size",
        "2",
        "--groups-per-step",
        "4",
        "--max-new-tokens",
        "4",
        "--set",
        "torch_threads=1",
        "--set",
        "progress=false",
        "--set",
        "kl_to_base_every=0",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert f"training {ARITH}:3 + {COUNT}:1" in flat
    run = RunDir(out)
    info = run.read_run_info()
    assert [(e["env"], e["weight"], e["kwargs"]) for e in info["envs"]] == [
        (ARITH, 3.0, {"operators": "+"}),
        (COUNT, 1.0, {"num_numbers": 3}),
    ]
    assert "env_kwargs:\n  max_turns: 1" in run.config_path.read_text()
    row = run.read_metrics()[0]
    played = {g.env_id for g in _groups(run)}
    for env in played:
        assert f"env/{env.removeprefix('envkit/')}/reward/mean" in row

    result = runner.invoke(app, ["report", str(out), "--no-plot"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    for env in played:
        assert f"[{env.removeprefix('envkit/')}] reward" in flat

    result = runner.invoke(app, ["train", "--resume", "--out", str(out), "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in run.read_metrics()] == [1, 2]
    expected = EnvMixture([("Arithmetic-v0", 3.0), ("Countdown-v0", 1.0)]).assign(8, seed=0)
    names = [ARITH, COUNT]
    assert [g.env_id for g in _groups(run)] == [names[i] for i in expected]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["Arithmetic-v0:0", "Countdown-v0"], "finite number > 0"),
        (["Arithmetic-v0:2", "Countdwn-v0"], "Did you mean: `Countdown`"),
        (["Arithmetic-v0", "Arithmetic-v0:2"], "in the mixture twice"),
        (["Arithmetic-v0", "Countdown-v0", "-k", "GuessNumber-v0.low=3"], "not trained here"),
        (["Arithmetic-v0", "Countdown-v0", "-k", "operators=+"], "Countdown-v0 cannot be made"),
    ],
)
def test_cli_mixture_errors_are_clear(extra: list[str], needle: str, tmp_path: Path) -> None:
    from envkit.cli.train import app

    args = ["train", *extra, "--model", "tiny-random", "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert needle in " ".join(result.output.split())


def test_docs_mixture_snippet_runs() -> None:
    import re

    text = (HERE.parents[1] / "docs" / "training.md").read_text()
    section = text[text.index("## Several envs in one run") : text.index("## How a step works")]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(block, "docs/training.md", "exec"), namespace)
    run = RunDir(namespace["config"].output_dir)
    assert any(k.startswith("env/") for k in run.read_metrics()[0])


def test_help_documents_the_mixture_form() -> None:
    from envkit.cli.train import app

    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    flat = " ".join(result.output.split())
    assert "ID[:WEIGHT]" in flat and "ENV_ID.KEY=VALUE" in flat
