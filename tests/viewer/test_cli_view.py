"""``envkit view`` from the command line: where the page goes, and errors that say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from envkit.cli.main import app
from envkit.cli.view import parse_steps
from envkit.trainers.run_dir import RunDir
from envkit.types import TrajectoryGroup

runner = CliRunner()


def flat(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


def test_view_writes_the_page_next_to_the_file_or_where_asked(
    sample_jsonl: Path, tmp_path: Path
) -> None:
    default = sample_jsonl.with_suffix(".html")
    default.unlink(missing_ok=True)
    result = runner.invoke(app, ["view", str(sample_jsonl)])
    assert result.exit_code == 0, result.output
    assert default.is_file() and default.read_text().startswith("<!doctype html>")
    assert "18 trajectories in 6 groups" in flat(result.output)
    out = tmp_path / "deep" / "page.html"
    result = runner.invoke(app, ["view", str(sample_jsonl), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == default.read_text()


def test_view_of_a_run_folder_takes_a_step_range(
    sample_groups: list[TrajectoryGroup], tmp_path: Path
) -> None:
    run = RunDir(tmp_path / "run")
    for step in (1, 2, 3):
        run.append_metrics({"kind": "train", "step": step, "reward/mean": 0.1 * step})
        run.write_trajectories(step, sample_groups[:1])
    result = runner.invoke(app, ["view", str(run.path), "--steps", "2:"])
    assert result.exit_code == 0, result.output
    assert (run.path / "view.html").is_file()
    assert "6 trajectories in 2 groups" in flat(result.output)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["view", "/nonexistent/run"], "does not exist; give a run folder"),
        (["view", "{empty}"], "is not an envkit run folder"),
        (["view", "{metrics}"], "pass the run folder instead"),
        (["view", "{empty}", "--steps", "a:b"], "--steps takes FIRST:LAST"),
        (["view", "{empty}", "--steps", "5:2"], "the first step is after the last"),
    ],
)
def test_bad_input_exits_2_with_what_to_do(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n')
    places = {"{empty}": str(tmp_path / "empty"), "{metrics}": str(tmp_path / "run/metrics.jsonl")}
    result = runner.invoke(app, [places.get(a, a) for a in args])
    assert result.exit_code == 2
    assert message in flat(result.output)
    assert not list(tmp_path.rglob("*.html"))


def test_parse_steps() -> None:
    assert parse_steps("3:9") == (3, 9) and parse_steps(":9") == (None, 9)
    assert parse_steps(" ") == (None, None)
    with pytest.raises(typer.BadParameter):
        parse_steps("1:2:3")


def test_view_is_listed_in_the_help() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "view" in result.output
    result = runner.invoke(app, ["view", "--help"])
    assert result.exit_code == 0 and "self-contained HTML page" in flat(result.output)
