"""A project made by ``envkit init``, end to end in a fresh virtual environment.

For each template: ``envkit init`` (the CLI, run by the venv's Python), ``pip install -e`` of the
generated project into a venv made with ``--system-site-packages`` (so it sees the installed
envkit, torch and TRL, and nothing of the project leaks into the system Python), then
``envkit list`` shows its id, ``envkit info`` its registered reward, ``envkit check`` passes, the
project's own tests pass under pytest, ``envkit eval`` runs it with a scripted policy (a real
litellm client against ``ScriptedOpenAIServer`` on 127.0.0.1) and ``envkit train --model
tiny-random --steps 1`` trains on it. The coding template's env runs code in Docker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from envkit.testing import Reply, ScriptedOpenAIServer
from envkit.testing.replies import RecordedRequest
from envkit.types import TrajectoryGroup, read_jsonl

NAMES = {"chat": "trivia-quest", "tools": "stock-room", "coding": "py-golf"}
IDS = {"chat": "TriviaQuest-v0", "tools": "StockRoom-v0", "coding": "PyGolf-v0"}
TEMPLATES = [
    pytest.param("chat", id="chat"),
    pytest.param("tools", id="tools"),
    pytest.param("coding", id="coding", marks=pytest.mark.docker),
]
SOLUTIONS = {  # right answers to the coding template's tasks
    "add": "def add(a, b):\n    return a + b\n",
    "reverse_words": "def reverse_words(text):\n    return ' '.join(reversed(text.split()))\n",
    "is_palindrome": (
        "def is_palindrome(s):\n    t = [c.lower() for c in s if c.isalpha()]\n"
        "    return t == t[::-1]\n"
    ),
    "fizzbuzz": (
        "def fizzbuzz(n):\n    if n % 15 == 0:\n        return 'FizzBuzz'\n"
        "    if n % 3 == 0:\n        return 'Fizz'\n    if n % 5 == 0:\n        return 'Buzz'\n"
        "    return str(n)\n"
    ),
}


class Venv:
    """A virtual environment that sees the system site-packages (envkit, torch, trl)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(root)],
            check=True,
            timeout=120,
        )
        self.python = str(root / "bin" / "python")

    def run(
        self, *args: str, cwd: Path, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "COLUMNS": "250", "HF_HUB_OFFLINE": "1"}
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        env.pop("PYTHONPATH", None)
        proc = subprocess.run(
            [self.python, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def envkit(self, *args: str, cwd: Path, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "envkit.cli", *args, cwd=cwd, **kw)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("newproj")


@pytest.fixture(scope="module")
def venv(work: Path) -> Venv:
    venv = Venv(work / "venv")
    assert venv.run("-c", "import sys; print(sys.prefix)", cwd=work).stdout.strip() == str(
        venv.root
    )
    return venv


@pytest.fixture(scope="module")
def projects(venv: Venv, work: Path) -> dict[str, Path]:
    """The three projects, made with `envkit init` and pip-installed (editable) into the venv."""
    made = {}
    for template, name in NAMES.items():
        target = work / name
        out = venv.envkit("init", name, "--template", template, "--dir", str(target), cwd=work)
        assert f"envkit/{IDS[template]}" in " ".join(out.stdout.split())
        venv.run(
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            "-e",
            str(target),
            cwd=work,
        )
        made[template] = target
    return made


def test_installed_into_the_venv_only(venv: Venv, projects: dict[str, Path], work: Path) -> None:
    probe = "import importlib.util as u; print(u.find_spec('stock_room') is not None)"
    assert venv.run("-c", probe, cwd=work).stdout.strip() == "True"
    system = subprocess.run(
        [sys.executable, "-c", probe], cwd=work, capture_output=True, text=True, check=True
    )
    assert system.stdout.strip() == "False", "the project leaked out of the venv"


@pytest.mark.parametrize("template", TEMPLATES)
def test_envkit_list_and_info_show_it(
    template: str, venv: Venv, projects: dict[str, Path], work: Path
) -> None:
    listed = venv.envkit("list", cwd=work).stdout
    assert f"envkit/{IDS[template]}" in listed
    package = NAMES[template].replace("-", "_")
    assert f"{package}.env:" in listed
    info = " ".join(venv.envkit("info", IDS[template], cwd=work).stdout.split())
    assert f"default reward: {package}_correct" in info
    # The reward is found by name through its entry point, in a fresh process.
    probe = f"from envkit.rewards import get; print(get('{package}_correct').name)"
    assert venv.run("-c", probe, cwd=work).stdout.strip() == f"{package}_correct"


@pytest.mark.parametrize("template", TEMPLATES)
def test_envkit_check_passes(
    template: str, venv: Venv, projects: dict[str, Path], work: Path
) -> None:
    out = venv.envkit("check", IDS[template], cwd=work).stdout
    assert "checks passed" in out and "FAIL" not in out


@pytest.mark.parametrize("template", TEMPLATES)
def test_its_own_tests_pass(template: str, venv: Venv, projects: dict[str, Path]) -> None:
    proc = venv.run("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=projects[template])
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
    assert int(summary.split()[0]) >= 7, summary  # env rules, reward, check and doctests ran


def _responder(template: str, project: Path) -> Any:
    """A scripted policy that solves the project's tasks (read from its tasks.jsonl)."""
    package = NAMES[template].replace("-", "_")
    lines = (project / package / "tasks.jsonl").read_text().splitlines()
    tasks = [json.loads(line) for line in lines if line.strip()]
    if template == "chat":
        answers = {t["question"]: t["answer"] for t in tasks}
        return lambda r: f"<answer>{answers[r.user_text]}</answer>"
    if template == "tools":
        answers = {t["question"]: t["answer"] for t in tasks}

        def use_tools(r: RecordedRequest) -> Reply:
            return Reply.calling(("list_items", {}), ("submit", {"answer": answers[r.user_text]}))

        return use_tools
    functions = {t["prompt"]: t["function"] for t in tasks}
    return lambda r: f"```python\n{SOLUTIONS[functions[r.user_text]]}```"


@pytest.mark.parametrize("template", TEMPLATES)
def test_envkit_eval_with_a_scripted_policy(
    template: str, venv: Venv, projects: dict[str, Path], work: Path
) -> None:
    out_file = work / f"eval-{template}.jsonl"
    with ScriptedOpenAIServer(responder=_responder(template, projects[template])) as server:
        args = ["--model", "openai/scripted", "--api-base", server.url, "-n", "4", "-g", "2"]
        out = venv.envkit("eval", IDS[template], *args, "--out", str(out_file), cwd=work).stdout
        assert len(server.requests) == 8, "one request per episode: each was solved at once"
        assert server.errors == []
    assert "mean reward 1.0000" in " ".join(out.replace("│", " ").split()), out
    groups = read_jsonl(out_file, TrajectoryGroup)
    trajectories = [t for g in groups for t in g]
    assert len(trajectories) == 8
    assert {(t.outcome, t.reward) for t in trajectories} == {("ok", 1.0)}
    if template == "tools":
        assert all(any(m.role == "tool" for m in t.messages) for t in trajectories)


@pytest.mark.slow
@pytest.mark.parametrize("template", TEMPLATES)
def test_envkit_train_one_step_on_tiny_random(
    template: str, venv: Venv, projects: dict[str, Path], work: Path
) -> None:
    run = work / f"run-{template}"
    args = ["--model", "tiny-random", "--steps", "1", "--out", str(run)]
    small = ["--group-size", "2", "--groups-per-step", "2", "--max-new-tokens", "8"]
    out = venv.envkit("train", IDS[template], *args, *small, cwd=work).stdout
    assert "adapter:" in out
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1]
    assert (run / "adapter" / "adapter_config.json").is_file()
    traj_files = list((run / "trajectories").glob("*.jsonl"))
    assert traj_files, "the step's trajectories were written"
    envs = {t.env_id for f in traj_files for g in read_jsonl(f, TrajectoryGroup) for t in g}
    assert envs == {f"envkit/{IDS[template]}"}
