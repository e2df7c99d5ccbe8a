"""``envkit.viewer.load_view``: what the page embeds, from eval files, trajectory files and runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envkit.trainers.run_dir import RunDir
from envkit.types import Trajectory, TrajectoryGroup, write_jsonl
from envkit.viewer import ViewerError, default_output, load_view


def test_an_eval_file_keeps_tool_calls_rewards_judge_and_errors(sample_jsonl: Path) -> None:
    view = load_view(sample_jsonl)
    assert view.kind == "jsonl" and len(view.groups) == 6 and len(view.trajectories) == 18
    rows = view.trajectories
    # tool calls and their outputs, in order
    spelled = next(r for r in rows if any(m.get("tool_calls") for m in r["messages"]))
    roles = [m["role"] for m in spelled["messages"]]
    assert roles[:3] == ["user", "assistant", "tool"]
    call = spelled["messages"][1]["tool_calls"][0]
    assert call["name"] == "spell" and json.loads(call["arguments"])["word"]
    assert spelled["messages"][2]["content"] == "-".join(json.loads(call["arguments"])["word"])
    assert spelled["tools"] == ["spell"]
    # the judge's verdicts, with its score in the breakdown and the hacking flag
    judged = [r for r in rows if r["judges"]]
    assert len(judged) == 6
    assert all(r["judges"][0]["name"] == "judge" for r in judged)
    assert all(r["judges"][0]["score"] == r["breakdown"]["judge"] for r in judged)
    assert {r["judges"][0]["reward_hacking"] for r in judged} == {True, False}
    assert all(r["judges"][0]["explanation"].startswith("because T") for r in judged)
    assert view.groups[0]["metrics"]["judge_model"] == "openai/judge-test"
    # failures keep their error and an unknown reward
    failed = [r for r in rows if r["outcome"] == "policy_error"]
    assert failed and all(r["reward"] is None for r in failed)
    assert all("ConnectionError" in r["error"] for r in failed)
    # groups list their members, members point to their group
    for g in view.groups:
        assert [rows[i]["group"] for i in g["members"]] == [g["id"]] * len(g["members"])
        assert [rows[i]["member"] for i in g["members"]] == list(range(len(g["members"])))
    # no token ids or logprobs: the page shows text
    assert "completions" not in rows[0] and "token_ids" not in json.dumps(rows)


def test_a_file_of_single_trajectories_is_grouped_by_task(tmp_path: Path) -> None:
    trajs = [
        Trajectory(env_id="envkit/E-v0", seed=s, task_id=f"t{s}", group_index=i, reward=i)
        for s in (1, 2)
        for i in range(3)
    ]
    path = tmp_path / "trajs.jsonl"
    write_jsonl(path, [trajs[0], trajs[3], *trajs[1:3], *trajs[4:]])
    view = load_view(path)
    assert [(g["seed"], len(g["members"])) for g in view.groups] == [(1, 3), (2, 3)]
    assert [view.trajectories[i]["reward"] for i in view.groups[0]["members"]] == [0, 1, 2]


def _run_with_steps(tmp_path: Path, groups: list[TrajectoryGroup], steps: int) -> Path:
    run = RunDir(tmp_path / "run")
    run.write_run_info({"env": "envkit/SayWord-v0", "model": "tiny-random"})
    for step in range(1, steps + 1):
        run.append_metrics({"kind": "train", "step": step, "reward/mean": step / steps})
        run.write_trajectories(step, groups[:2])
    run.append_metrics({"kind": "eval", "step": steps, "eval/reward_mean": 0.5})
    return run.path


def test_a_run_folder_gives_steps_metrics_and_run_info(
    sample_groups: list[TrajectoryGroup], tmp_path: Path
) -> None:
    path = _run_with_steps(tmp_path, sample_groups, 3)
    view = load_view(path)
    assert view.kind == "run" and view.run_info["model"] == "tiny-random"
    assert [g["step"] for g in view.groups] == [1, 1, 2, 2, 3, 3]
    assert {r["step"] for r in view.trajectories} == {1, 2, 3}
    assert len(view.metrics) == 4
    some = load_view(path, steps=(2, None))
    assert {r["step"] for r in some.trajectories} == {2, 3}
    assert [r["step"] for r in some.metrics] == [2, 3, 3]
    assert default_output(path) == path / "view.html"


def test_a_torn_last_line_is_skipped_with_a_warning_a_bad_middle_line_is_an_error(
    sample_jsonl: Path, tmp_path: Path
) -> None:
    lines = sample_jsonl.read_text().splitlines()
    torn = tmp_path / "torn.jsonl"
    torn.write_text("\n".join(lines[:2]) + "\n" + lines[2][:100])  # killed mid-write
    view = load_view(torn)
    assert len(view.groups) == 2
    assert len(view.warnings) == 1 and "torn.jsonl:3" in view.warnings[0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[0] + "\n" + lines[1][:100] + "\n" + lines[2] + "\n")
    with pytest.raises(ViewerError, match=r"bad\.jsonl:2: not JSON"):
        load_view(bad)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no trajectories"),
        ('{"kind": "train", "step": 1, "loss": 0.1}\n', "looks like a metrics file"),
        ('{"env_id": "e", "reward": "high"}\n', r"not a valid Trajectory: .* at reward"),
        ('{"env_id": "e", "trajectories": [{"outcome": "?"}]}\n', "not a valid TrajectoryGroup"),
        ("[1, 2]\n", "a JSON list, expected an object"),
    ],
)
def test_input_that_is_not_trajectories_says_what_is_wrong(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(content)
    with pytest.raises(ViewerError, match=message):
        load_view(path)


def test_missing_paths_and_folders_that_are_not_runs_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ViewerError, match="does not exist"):
        load_view(tmp_path / "nope.jsonl")
    with pytest.raises(ViewerError, match="not an envkit run folder"):
        load_view(tmp_path)


def test_long_messages_are_cut_visibly_and_zero_keeps_them(tmp_path: Path) -> None:
    text = "x" * 5000 + "END"
    traj = Trajectory(env_id="e", messages=[{"role": "user", "content": text}])
    path = tmp_path / "long.jsonl"
    write_jsonl(path, [traj])
    cut = load_view(path, max_message_chars=1000).trajectories[0]["messages"][0]["content"]
    assert len(cut) < 1100 and "[... 4003 characters cut by envkit view ...]" in cut
    assert cut.endswith("END")
    whole = load_view(path, max_message_chars=0).trajectories[0]["messages"][0]["content"]
    assert whole == text
