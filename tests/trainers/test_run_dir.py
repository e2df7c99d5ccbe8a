"""The run folder: metrics, trajectories, checkpoint markers, rewind for resume, report, plot."""

from __future__ import annotations

import json

from envkit.trainers.report import plot_run, print_summary, summarize_run
from envkit.trainers.run_dir import COMPLETE_MARKER, RunDir
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
