"""Every file in ``examples/`` runs as a user would run it (``python examples/X.py``), in a
subprocess, and prints what its docstring promises."""

from __future__ import annotations

import ast
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TESTED = {
    "single_turn_env.py",
    "tool_env.py",
    "sandboxed_coding_env.py",
    "reward_and_rubric.py",
    "ruler_judge.py",
    "train_from_python.py",
    "compare_adapters.py",
    "agent_openai_sdk.py",
    "agent_litellm.py",
    "agent_openai_agents_sdk.py",
}
# Examples run by the tests of their own feature (tests/interop/...).
TESTED_ELSEWHERE = {
    "mcp_tools.py": "tests/interop/mcp/test_mcp_example.py",
    "openenv_play.py": "tests/interop/openenv/test_examples.py",
    "openenv_serve.py": "tests/interop/openenv/test_examples.py",
}


def run_example(name: str, *args: str, cwd: Path, timeout: float = 600) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env["TOKENIZERS_PARALLELISM"] = "false"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_every_example_is_tested_and_documented() -> None:
    files = {p.name for p in EXAMPLES.glob("*.py")}
    assert files == TESTED | set(TESTED_ELSEWHERE), (
        "a new example needs a test here or in TESTED_ELSEWHERE (and a removed one, its test gone)"
    )
    root = EXAMPLES.parent
    for name, test_file in TESTED_ELSEWHERE.items():
        assert name in (root / test_file).read_text(), f"{test_file} does not run {name}"
    for name in sorted(files):
        doc = ast.get_docstring(ast.parse((EXAMPLES / name).read_text())) or ""
        assert "Shows:" in doc, f"{name}: the docstring says what it shows"
        assert f"python examples/{name}" in doc, f"{name}: the docstring says how to run it"


def test_single_turn_env(tmp_path: Path) -> None:
    out = run_example("single_turn_env.py", cwd=tmp_path)
    assert "step: reward=1.0 terminated=True truncated=False" in out
    assert "episodes: 40" in out and "outcomes: {'ok': 40}" in out
    # The example's policy is right exactly on the even numbers: count them independently.
    module = runpy.run_path(str(EXAMPLES / "single_turn_env.py"), run_name="not_main")
    env = module["DoubleEnv"]()
    even = 0
    for seed in range(20):
        env.reset(seed=seed)
        even += env.task.reference % 4 == 0  # 2n with n even
    assert f"mean reward: {even / 20:.2f}" in out
    assert 0 < even < 20, "the check needs both kinds of task"


def test_tool_env(tmp_path: Path) -> None:
    out = run_example("tool_env.py", cwd=tmp_path)
    assert "tools: ['population', 'submit']" in out
    assert "unknown city 'Atlantis'" in out and "tool_errors=1" in out
    assert f"rewards: {[1.0] * 8}" in out
    assert "turns per episode: [2]" in out and "outcomes: ['ok']" in out
    transcript = out.split("episode 0:")[1]
    assert transcript.count("  tool: ") == 3  # two lookups in one turn, then submit
    assert re.search(r"assistant: population\(.*\) population\(.*\)", transcript)


@pytest.mark.docker
def test_sandboxed_coding_env_on_its_own_image(tmp_path: Path) -> None:
    out = run_example("sandboxed_coding_env.py", cwd=tmp_path)
    assert "built envkit-example-coding:latest" in out
    own = [line for line in out.splitlines() if line.startswith("envkit-example-coding:latest:")]
    default = [line for line in out.splitlines() if line.startswith("envkit-sandbox:latest:")]
    assert len(own) == len(default) == 2
    assert all(line.endswith("reward 1.0") for line in own), own
    assert all("reward 0.0" in line and "No module named 'geometry'" in line for line in default)


def test_reward_and_rubric(tmp_path: Path) -> None:
    out = run_example("reward_and_rubric.py", cwd=tmp_path)
    assert "groups=6 trajectories=12 scored=12 errors=0" in out
    rows = re.findall(
        r"reward (\S+) = \{'example/correct': (\S+), 'example/shortest': (\S+), "
        r"'bare_number': (\S+)\}",
        out,
    )
    assert len(rows) == 2
    for total, correct, shortest, bare in rows:
        weighted = 1.0 * float(correct) + 0.2 * float(shortest) + 0.1 * float(bare)
        assert float(total) == pytest.approx(weighted, abs=0.005)
    wordy = [r for r in rows if r[2] == "0.0"]
    assert wordy == [("1.00", "1.0", "0.0", "0.0")], "the wordy reply is right, not shortest"
    assert "without a reference: reward=None" in out
    assert "example/correct needs a reference answer" in out


def test_ruler_judge(tmp_path: Path) -> None:
    out = run_example("ruler_judge.py", cwd=tmp_path)
    assert "groups=4 trajectories=8 scored=8 errors=0 judge_errors=0" in out
    assert "judge requests: 4 for 4 groups (rubric in each: True)" in out
    assert re.search(r"reply '\d+ [-+*] \d+ = -?\d+': judge 0.9 \{'judge_explanation': ", out)
    assert "reply 'Probably 7.': judge 0.1 {'judge_explanation': " in out
    assert "pairwise accuracy vs the env's reward: 1.00" in out


@pytest.mark.slow
def test_train_from_python(tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = run_example("train_from_python.py", str(run), cwd=tmp_path)
    assert f"trained 2 steps -> {run}" in out
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert re.search(r"step 1: reward/mean -?\d", out) and re.search(r"step 2: reward/mean", out)
    assert re.search(r"held-out base: 4 episodes, mean reward -?\d", out)
    assert re.search(r"held-out adapter: 4 episodes, mean reward -?\d", out)


@pytest.mark.slow
def test_compare_adapters(tmp_path: Path) -> None:
    out = run_example("compare_adapters.py", cwd=tmp_path)
    table = " ".join(out.replace("│", " ").split())
    for name in ("base", "lr-0.0001", "lr-0.01"):
        assert f"{name}: 8 episodes on seeds [0, 1, 2, 3]" in out
        assert re.search(rf"{re.escape(name)} -?\d\.\d{{3}} ", table), name
    same = int(re.search(r"lr-0.01: 8 episodes .*, (\d) replies as the base's", out)[1])
    assert same < 8, "the adapter trained at lr 1e-2 is active: some replies differ"


@pytest.mark.parametrize("name", ["agent_openai_sdk.py", "agent_litellm.py"])
def test_two_call_agent_examples(name: str, tmp_path: Path) -> None:
    out = run_example(name, cwd=tmp_path)
    assert "episodes: 4" in out and "outcomes: ['ok']" in out
    assert "calls per episode: [2, 2, 2, 2]" in out
    # answer, verdict, answer: both calls link into one training sequence of sampled ids
    assert "roles: ['user', 'assistant', 'user', 'assistant']" in out and "branches: 1" in out
    assert "sampled token ids per call: [8, 8]" in out


def test_openai_agents_sdk_example(tmp_path: Path) -> None:
    out = run_example("agent_openai_agents_sdk.py", cwd=tmp_path)
    for api in ("chat.completions", "responses"):
        part = out.split(f"{api}:")[1]
        assert "outcomes: ['ok', 'ok']" in part and "rewards: [1.0, 1.0]" in part
        assert "answers: ['The sum is 42.', 'The sum is 7.']" in part
        assert "tool ran with: [(3, 4), (17, 25)]" in part
        # the gateway recorded both calls of the round trip, on the API the model class uses
        assert f"recorded calls: [('{api}', 'tool_calls'), ('{api}', 'stop')]" in part
        assert "roles the second call saw: ['system', 'user', 'assistant', 'tool']" in part
