"""``envkit train`` / ``envkit report`` through typer's runner (the commands the lead mounts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from envkit.cli.train import app
from envkit.trainers.run_dir import RunDir

runner = CliRunner()


@pytest.fixture(autouse=True)
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_train_then_report_then_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "train",
        "Arithmetic-v0",
        "--model",
        "tiny-random",
        "-k",
        "operators=+",
        "-k",
        "max_turns=1",
        "--steps",
        "2",
        "--out",
        str(out),
        "--group-size",
        "2",
        "--groups-per-step",
        "2",
        "--max-new-tokens",
        "4",
        "--set",
        "save_steps=1",
        "--set",
        "torch_threads=1",
        "--set",
        "progress=false",
        "--report-to",
        "tensorboard",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    run = RunDir(out)
    assert [r["step"] for r in run.read_metrics()] == [1, 2]
    assert (run.adapter_dir / "adapter_config.json").is_file()
    assert run.plot_path.is_file()
    assert "adapter:" in result.output
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))  # report_to tensorboard

    run.plot_path.unlink()
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert "reward, last" in result.output and run.plot_path.is_file()

    # Starting again in the same folder is refused; --resume with more steps continues.
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "already holds a run" in _flat(result.output)
    result = runner.invoke(app, ["train", "--resume", "--out", str(out), "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3]
    marker = run.checkpoints_dir / "checkpoint-3" / "envkit_checkpoint.json"
    assert json.loads(marker.read_text())["step"] == 3

    # --overwrite replaces the run with a new one.
    result = runner.invoke(app, [*args, "--overwrite", "--steps", "1"])
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in run.read_metrics()] == [1]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "Arithmetc-v0", "--model", "tiny-random"], "Did you mean: `Arithmetic`"),
        (["train", "Arithmetic-v0"], "give ENV_ID and --model"),
        (["train", "--resume"], "--resume needs --out"),
        (["train", "--resume", "--overwrite", "--out", "{tmp}"], "pick one"),
        (
            ["train", "Arithmetic-v0", "--model", "tiny-random", "--set", "lerning_rate=1"],
            "learning_rate",
        ),
        (["train", "Arithmetic-v0", "--model", "tiny-random", "--group-size", "1"], "group_size"),
        (
            ["train", "Arithmetic-v0", "--model", "tiny-random", "--reward", "no_such_reward"],
            "no_such_reward",
        ),
        (
            ["train", "Arithmetic-v0", "--model", "no-such-model", "--out", "{tmp}/r"],
            "unknown model",
        ),
        (
            ["train", "Arithmetic-v0", "--model", "tiny-random", "--rollout-backend", "ray"],
            "needs policy_server",
        ),
        (
            ["train", "Arithmetic-v0", "--model", "tiny-random", "--max-staleness", "-1"],
            "max-staleness",
        ),
        (["report", "{tmp}"], "not an envkit run folder"),
    ],
)
def test_bad_input_gives_clear_errors(args: list[str], needle: str, tmp_path: Path) -> None:
    result = runner.invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2, result.output
    assert needle in _flat(result.output)


def _flat(text: str) -> str:
    """Output without rich's line wrapping."""
    return " ".join(text.split())


def test_eval_loads_a_plain_directory_and_reports_device_and_dtype(tmp_path: Path) -> None:
    from envkit.cli.main import app as main_app
    from envkit.models import load_model

    model, tok = load_model("tiny-random")
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    args = ["eval", "Arithmetic-v0", "--model", str(tmp_path / "m"), "-n", "1", "-g", "1"]
    args += ["--max-tokens", "3", "--device", "cpu", "-k", "max_turns=1"]
    result = runner.invoke(main_app, args)
    assert result.exit_code == 0, result.output
    flat = _flat(result.output)
    assert "device" in flat and "cpu" in flat and "float32" in flat


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a CPU-only machine gives")
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["eval", "Arithmetic-v0", "--model", "tiny-random", "--device", "cuda:7"], "cuda:7"),
        (["eval", "Arithmetic-v0", "--model", "tiny-random", "--device", "gpu"], "unknown device"),
        (["eval", "Arithmetic-v0", "--model", "openai/x", "--device", "cuda"], "local models"),
        (["train", "Arithmetic-v0", "--model", "tiny-random", "--device", "cuda:7"], "cuda:7"),
    ],
)
def test_device_errors_are_clear(args: list[str], needle: str, tmp_path: Path) -> None:
    from envkit.cli.main import app as main_app

    extra = ["--out", str(tmp_path / "r")] if args[0] == "train" else []
    result = runner.invoke(main_app, args + extra)
    assert result.exit_code == 2, result.output
    assert needle in _flat(result.output)
