"""The run folder: metrics, trajectories, checkpoint markers, rewind for resume, report, plot."""

from __future__ import annotations

import json

import pytest

from envkit.trainers.report import plot_run, print_summary, summarize_run
from envkit.trainers.run_dir import (
    COMPLETE_MARKER,
    RunDir,
    parse_trajectory_file_name,
    trajectory_file_name,
)
from envkit.types import Trajectory, TrajectoryGroup


def _fill(run: RunDir, steps: int) -> None:
    for s in range(1, steps + 1):
        run.append_metrics(
            {
                "kind": "train",
                "step": s,
                "reward/mean": s / steps,
                "entropy": 2.0 - s / steps,
                "time/step_s": 1.5,
                "time/elapsed_s": 1.5 * s,
                "bad": float("nan"),
            }
        )
        run.write_trajectories(
            s, [TrajectoryGroup(env_id="e", seed=s, trajectories=[Trajectory(env_id="e")])]
        )


def test_metrics_and_torn_lines(tmp_path) -> None:
    run = RunDir(tmp_path / "run")
    _fill(run, 3)
    with run.metrics_path.open("a") as f:
        f.write('{"kind": "train", "step": 4, "rew')  # a kill -9 in the middle of a write
    rows = run.read_metrics()
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[0]["bad"] is None  # NaN is written as null, not as invalid JSON


def test_rewind_and_complete_checkpoints(tmp_path) -> None:
    run = RunDir(tmp_path / "run")
    _fill(run, 5)
    for step, complete in [(2, True), (4, True), (5, False)]:
        ckpt = run.checkpoints_dir / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        if complete:
            run.mark_complete(ckpt, {"step": step})
    assert [s for s, _ in run.checkpoints()] == [2, 4]
    assert run.last_checkpoint()[0] == 4
    run.rewind(2)
    assert [r["step"] for r in run.read_metrics()] == [1, 2]
    assert sorted(p.name for p in run.trajectories_dir.iterdir()) == [
        "step-000001.jsonl",
        "step-000002.jsonl",
    ]
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["checkpoint-2"]
    assert (
        json.loads((run.checkpoints_dir / "checkpoint-2" / COMPLETE_MARKER).read_text())["step"]
        == 2
    )


def test_trajectory_file_names_have_one_writer_and_one_reader(tmp_path) -> None:
    from envkit.viewer import load_view

    run = RunDir(tmp_path / "run")
    for step in (1, 2, 12):
        for rank in (0, 1, 10):
            group = TrajectoryGroup(env_id="e", seed=100 * step + rank, trajectories=[])
            group.trajectories.append(Trajectory(env_id="e"))
            path = run.write_trajectories(step, [group], rank)
            assert parse_trajectory_file_name(path.name) == (step, rank)
    assert trajectory_file_name(12, 10) == "step-000012.rank10.jsonl"
    strays = ["step-000003.jsonl.tmp1", "notes.jsonl", "step-x.jsonl", "step-000004.rank.jsonl"]
    for stray in strays:
        (run.trajectories_dir / stray).write_text("{}\n")
    assert [(s, r) for s, r, _ in run.trajectory_files((2, None))] == [
        (2, 0),
        (2, 1),
        (2, 10),
        (12, 0),
        (12, 1),
        (12, 10),
    ]
    # The viewer reads exactly what the trainer wrote (and only that).
    view = load_view(run.path, steps=(2, 2))
    assert sorted(g["seed"] for g in view.groups) == [200, 201, 210]
    run.rewind(1)
    left = sorted(p.name for p in run.trajectories_dir.iterdir())
    kept = ["step-000001.jsonl", "step-000001.rank1.jsonl", "step-000001.rank10.jsonl"]
    assert left == sorted([*kept, *strays])
    with pytest.raises(ValueError, match="step and rank must be >= 0"):
        trajectory_file_name(-1)


def test_summary_and_plot(tmp_path) -> None:
    run = RunDir(tmp_path / "run")
    _fill(run, 8)
    run.append_metrics({"kind": "eval", "step": 8, "eval/reward_mean": 0.7})
    s = summarize_run(run.path)
    assert s["steps"] == 8
    assert s["reward_first"] < s["reward_last"]
    assert s["evals"] == [{"step": 8, "reward_mean": 0.7}]
    assert s["entropy_first"] > s["entropy_last"]
    png = plot_run(run.path)
    assert png == run.plot_path and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from rich.console import Console

    console = Console(record=True, width=120)
    print_summary(run.path, console)
    text = console.export_text()
    assert "held-out reward @ step 8" in text and "0.7" in text
