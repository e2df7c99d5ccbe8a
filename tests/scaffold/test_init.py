"""``envkit init``: names, refusals, and what each template writes (fast, no install)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envkit.cli.main import app
from envkit.scaffold import TEMPLATES, InvalidNameError, ProjectNames, ScaffoldError, scaffold

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from the `dev` extra
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_DIR = REPO / "envkit" / "scaffold" / "templates"
runner = CliRunner()


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("name", "package", "env_class", "env_id", "reward"),
    [
        ("word-golf", "word_golf", "WordGolfEnv", "WordGolf-v0", "word_golf_correct"),
        ("maze", "maze", "MazeEnv", "Maze-v0", "maze_correct"),
        ("my_env2", "my_env2", "MyEnv2Env", "MyEnv2-v0", "my_env2_correct"),
        ("GridEnv", "gridenv", "GridEnv", "GridEnv-v0", "gridenv_correct"),
    ],
)
def test_names_derived_from_the_project_name(
    name: str, package: str, env_class: str, env_id: str, reward: str
) -> None:
    n = ProjectNames.from_name(name)
    assert (n.dist, n.package, n.env_class, n.env_id, n.reward) == (
        name,
        package,
        env_class,
        env_id,
        reward,
    )


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "use a letter followed by letters and digits"),
        ("1maze", "use a letter followed by letters and digits"),
        ("my env", "use a letter followed by letters and digits"),
        ("a--b", "use a letter followed by letters and digits"),
        ("maze-", "use a letter followed by letters and digits"),
        ("maze.v2", "use a letter followed by letters and digits"),
        ("for", "would shadow a Python keyword"),
        ("json", "would shadow an existing module"),
        ("envkit", "would shadow an existing module"),
        ("Torch", "would shadow an existing module"),
    ],
)
def test_an_invalid_name_is_refused_with_the_reason(
    name: str, why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidNameError, match=why):
        ProjectNames.from_name(name)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["init", name])
    assert result.exit_code == 2
    assert f"invalid project name {name!r}" in flat(result.output) and why in flat(result.output)
    assert list(tmp_path.iterdir()) == [], "nothing is written for a refused name"


def test_a_non_empty_directory_is_refused_and_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["init", "word-golf", "--dir", str(target)])
    assert result.exit_code == 2
    assert "already exists and is not empty" in flat(result.output)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert (target / "notes.txt").read_text() == "mine"


def test_a_file_in_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "word-golf").write_text("x")
    with pytest.raises(ScaffoldError, match="is a file"):
        scaffold("word-golf", directory=tmp_path / "word-golf")


def test_a_name_an_installed_module_has_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", "litellm-env", "--dir", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output  # litellm_env: no such module
    result = runner.invoke(app, ["init", "jsonschema", "--dir", str(tmp_path / "b")])
    assert result.exit_code == 2
    assert "a module named 'jsonschema' is already importable here" in flat(result.output)
    assert not (tmp_path / "b").exists()


def test_an_unknown_template_is_refused_with_the_choices(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", "word-golf", "-t", "web", "--dir", str(tmp_path / "w")])
    assert result.exit_code == 2
    out = flat(result.output)
    assert "unknown template 'web'" in out and all(t in out for t in TEMPLATES)
    assert not (tmp_path / "w").exists()


def test_an_empty_directory_is_used(tmp_path: Path) -> None:
    result = scaffold("word-golf", directory=tmp_path)
    assert (tmp_path / "word_golf" / "env.py").is_file()
    assert result.directory == tmp_path


def test_default_directory_is_the_name_and_next_steps_are_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["init", "word-golf"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "word-golf" / "pyproject.toml").is_file()
    out = flat(result.output)
    assert "envkit/WordGolf-v0" in out and "word_golf_correct" in out
    assert 'pip install -e ".[dev]"' in out and "envkit check WordGolf-v0" in out


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_each_template_writes_a_complete_project(template: str, tmp_path: Path) -> None:
    result = scaffold("stock-room", template=template, directory=tmp_path / "p")
    root = result.directory
    assert {p.as_posix() for p in result.files} == {
        ".gitignore",
        "README.md",
        "pyproject.toml",
        "stock_room/__init__.py",
        "stock_room/env.py",
        "stock_room/rewards.py",
        "stock_room/tasks.jsonl",
        "tests/test_check.py",
        "tests/test_env.py",
    }
    for rel in result.files:
        text = (root / rel).read_text()
        assert "{{" not in text and "__package__" not in text, f"unrendered placeholder in {rel}"
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "stock-room"
    eps = project["project"]["entry-points"]
    assert eps["envkit.environments"] == {"StockRoom-v0": "stock_room.env:StockRoomEnv"}
    assert eps["envkit.rewards"] == {"stock_room_correct": "stock_room.rewards:correct"}
    assert project["tool"]["setuptools"]["package-data"] == {"stock_room": ["tasks.jsonl"]}
    readme = (root / "README.md").read_text()
    assert "envkit check StockRoom-v0" in readme and f"--template {template}" in readme


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_generated_code_is_ruff_clean(template: str, tmp_path: Path) -> None:
    """A new project starts lint-clean under its own ruff settings (line length 100)."""
    root = scaffold("a-rather-long-project-name", template=template, directory=tmp_path).directory
    for args in (["check"], ["format", "--check"]):
        proc = subprocess.run(
            [sys.executable, "-m", "ruff", *args, "--no-cache", "."],
            cwd=root,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_template_file_is_package_data(tmp_path: Path) -> None:
    """A wheel of envkit, really built, ships every template file under the same path."""
    # Build from a copy: building writes build/ and *.egg-info next to pyproject.toml.
    src = tmp_path / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git", "__pycache__", "*.egg-info", "build", "dist", "runs", ".*cache*", ".envkit"
        ),
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--skip-dependency-check",  # "wheel" is listed; setuptools >= 70.1 needs none
            "--outdir",
            "dist",
            "src",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("envkit_rl-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = set(zf.namelist())
    files = [
        "envkit/" + p.relative_to(TEMPLATE_DIR.parents[1]).as_posix()
        for p in TEMPLATE_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert len(files) >= 15
    assert "envkit/scaffold/__init__.py" in shipped
    missing = [f for f in files if f not in shipped]
    assert missing == []
